// Evaluated in the XS worker just before a bundle of the core (see harness.ts). It captures, in
// this closure, the few host facilities the test plumbing needs (issueCommand, TextEncoder,
// setImmediate, gc, print), then deletes from the global object every property that is not an
// ECMAScript standard global. Code loaded afterwards sees what XS on a device guarantees at
// most: no TextEncoder/TextDecoder, atob/btoa, Base64, timers, console, harden, Compartment...
// It returns the `harness` object the bundle receives as a parameter.
// A single expression: harness.ts evaluates `((harness) => { <bundle> })((<this file>)())`.
(function sandbox() {
  'use strict';
  const g = globalThis;
  const issueCommand = g.issueCommand;
  const encoder = new g.TextEncoder();
  const decoder = new g.TextDecoder();
  const setImmediate = g.setImmediate;
  const gc = g.gc;
  const print = g.print;
  const { stringify, parse } = JSON;
  const { getOwnPropertyNames, defineProperty, freeze } = Object;

  // ECMA-262 (through ES2024) value and function properties and constructors of the global object.
  const STANDARD = [
    'globalThis', 'Infinity', 'NaN', 'undefined',
    'eval', 'isFinite', 'isNaN', 'parseFloat', 'parseInt',
    'decodeURI', 'decodeURIComponent', 'encodeURI', 'encodeURIComponent', 'escape', 'unescape',
    'AggregateError', 'Array', 'ArrayBuffer', 'Atomics', 'BigInt', 'BigInt64Array', 'BigUint64Array',
    'Boolean', 'DataView', 'Date', 'Error', 'EvalError', 'FinalizationRegistry', 'Float32Array',
    'Float64Array', 'Function', 'Int8Array', 'Int16Array', 'Int32Array', 'JSON', 'Map', 'Math',
    'Number', 'Object', 'Promise', 'Proxy', 'RangeError', 'ReferenceError', 'Reflect', 'RegExp',
    'Set', 'SharedArrayBuffer', 'String', 'Symbol', 'SyntaxError', 'TypeError', 'Uint8Array',
    'Uint8ClampedArray', 'Uint16Array', 'Uint32Array', 'URIError', 'WeakMap', 'WeakRef', 'WeakSet',
  ];
  const removed = [];
  const kept = [];
  for (const name of getOwnPropertyNames(g)) {
    if (STANDARD.includes(name)) continue;
    if (delete g[name]) removed.push(name);
    else kept.push(name);
  }

  const send = (message) => {
    issueCommand(encoder.encode(stringify(message)).buffer);
  };
  const describeError = (error) => {
    if (error === null || typeof error !== 'object') return { thrown: String(error) };
    const out = { name: String(error.name), message: String(error.message) };
    for (const key of ['kind', 'errorCode', 'trackingId', 'status']) {
      if (error[key] !== undefined) out[key] = error[key];
    }
    if (error.stack !== undefined) out.stack = String(error.stack);
    return out;
  };
  const commands = new Map();

  // xsnap delivers Node's commands to the global `handleCommand` (the one global we add).
  // A command is JSON { name, arg }; the reply is JSON { ok, value } or { ok: false, error }.
  // An async handler's reply is set on the returned box before the job queue empties.
  defineProperty(g, 'handleCommand', {
    configurable: true,
    writable: true,
    value: (buffer) => {
      const encode = (reply) => encoder.encode(stringify(reply)).buffer;
      let request;
      try {
        request = parse(decoder.decode(buffer));
      } catch (error) {
        return encode({ ok: false, error: describeError(error) });
      }
      const handler = commands.get(request.name);
      if (!handler) return encode({ ok: false, error: { message: `no command ${request.name}` } });
      let value;
      try {
        value = handler(request.arg);
      } catch (error) {
        return encode({ ok: false, error: describeError(error) });
      }
      if (!(value instanceof Promise)) return encode({ ok: true, value });
      const box = { result: encode({ ok: false, error: { message: 'the command did not settle' } }) };
      value.then(
        (v) => (box.result = encode({ ok: true, value: v })),
        (error) => (box.result = encode({ ok: false, error: describeError(error) })),
      );
      return box;
    },
  });

  return freeze({
    engine: 'xs',
    removedGlobals: freeze(removed),
    keptGlobals: freeze(kept),
    /** Send a JSON value to Node now. */
    send,
    /** Run `fn` (sync or async) and send its outcome as { type: 'result', ok, value | error }. */
    run(fn) {
      Promise.resolve()
        .then(fn)
        .then(
          (value) => send({ type: 'result', ok: true, value }),
          (error) => send({ type: 'result', ok: false, error: describeError(error) }),
        );
    },
    /** Register a handler for Node's command `name`. */
    command(name, fn) {
      commands.set(name, fn);
    },
    /** Resolves after the job queue has emptied (an XS host macrotask). */
    idle() {
      return new Promise((resolve) => setImmediate(resolve));
    },
    gc() {
      gc();
    },
    log(...args) {
      print(...args);
    },
    describeError,
  });
})
