// `hub invoke-device-method` and `hub c2d-message send`: a direct method on a connected device
// (its answer printed as `az iot hub invoke-device-method` prints it: {"status", "payload"}) and a
// cloud-to-device message (the flags of `az iot device c2d-message send`).
import { ProvisioningError } from '../../src/errors.js';
import { printJson, required, serviceClient } from '../service/flags.js';
import { jsonFlag, propertyBag } from '../shared/args.js';
import { DEVICE_ID, HUB_NAME, type HubCommand, hubBase, seconds } from './shared.js';

/** IoT Hub bounds a method's response timeout to 5..300 s; az's default is 30 s. */
const METHOD_TIMEOUT = { min: 5, max: 300, default: 30 };
/** The request waits for the device's answer: its own deadline is the method's timeout and this much more. */
const REQUEST_MARGIN_SECONDS = 30;

const invokeDeviceMethod: HubCommand = {
  usage: `invoke-device-method --hub-name <host> --device-id <id> --method-name <name>
                   [--method-payload <json>] [--timeout <seconds>]
                   calls a direct method on the connected device and prints its answer {status, payload};
                   --method-payload defaults to {}, --timeout (how long the device has to answer, 5 to
                   300) to 30. A device that is not connected: exit 5; one that does not answer in time: exit 7`,
  // --timeout here is az's: the method's response timeout, not the request's.
  flags: { ...HUB_NAME, ...DEVICE_ID, 'method-name': { type: 'string' }, 'method-payload': { type: 'string' } },
  async run(values, io) {
    const methodName = required(values, 'method-name');
    const payload = jsonFlag(values['method-payload'] as string | undefined, '--method-payload') ?? {};
    const timeout = seconds(values, 'timeout', METHOD_TIMEOUT.min, METHOD_TIMEOUT.max, METHOD_TIMEOUT.default);
    const path = `${hubBase(values)}/twins/${encodeURIComponent(required(values, 'device-id'))}/methods`;
    const client = serviceClient({ ...values, timeout: String(timeout + REQUEST_MARGIN_SECONDS) }, io);
    const answer = (await client.call('POST', path, { body: { methodName, payload, responseTimeoutInSeconds: timeout } })).body as {
      status: number;
      payload: unknown;
    };
    if (values.json === true) printJson(io, answer);
    else io.stdout(`status: ${answer.status}\npayload: ${JSON.stringify(answer.payload ?? null)}\n`);
    return 0;
  },
};

const c2dMessageSend: HubCommand = {
  usage: `c2d-message send --hub-name <host> --device-id <id> [--data <text>] [--properties <a=b;c=d>]
                   [--content-type <type>] [--content-encoding <encoding>]
                   sends a cloud-to-device message to the connected device (az names it 'az iot device
                   c2d-message send'; it is here because it is the hub's service side, sent with the
                   service connection, while 'moddable-dps device' is the device). --props is --properties.
                   A device not connected with cloud-to-device messages subscribed: exit 5 (the emulator
                   does not queue messages)`,
  flags: {
    ...HUB_NAME,
    ...DEVICE_ID,
    data: { type: 'string' },
    properties: { type: 'string' },
    props: { type: 'string' },
    'content-type': { type: 'string' },
    'content-encoding': { type: 'string' },
  },
  async run(values, io) {
    if (values.properties !== undefined && values.props !== undefined)
      throw new ProvisioningError('invalid-input', 'Give --properties or --props, not both');
    const text = (values.properties ?? values.props) as string | undefined;
    const properties: Record<string, string> = text === undefined ? {} : applicationProperties(text);
    if (typeof values['content-type'] === 'string') properties['$.ct'] = values['content-type'];
    if (typeof values['content-encoding'] === 'string') properties['$.ce'] = values['content-encoding'];
    const deviceId = required(values, 'device-id');
    const body = typeof values.data === 'string' ? values.data : 'Ping from moddable-dps';
    const path = `${hubBase(values)}/devices/${encodeURIComponent(deviceId)}/messages/deviceBound`;
    await serviceClient(values, io).call('POST', path, { body: { body, properties } });
    if (values.json === true) printJson(io, { deviceId, sent: true });
    else io.stdout(`sent a cloud-to-device message to ${deviceId}\n`);
    return 0;
  },
};

/** az's property bag 'a=b;c=d': application properties (the system ones have their own flags). */
function applicationProperties(text: string): Record<string, string> {
  const properties = propertyBag(text);
  if (Object.keys(properties).some((name) => name.startsWith('$')))
    throw new ProvisioningError('invalid-input', '--properties are application properties: a name may not start with $');
  return properties;
}

export const MESSAGING_COMMANDS: Record<string, HubCommand> = {
  'invoke-device-method': invokeDeviceMethod,
  'c2d-message send': c2dMessageSend,
};
