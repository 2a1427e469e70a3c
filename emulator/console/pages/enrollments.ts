// Manage enrollments: enrollment groups and individual enrollments as the portal lists them;
// create, edit (guarded by the etag read), delete; keys hidden until Show keys is pressed (a
// POST: the page holds no key before); and each enrollment's registration records, with delete
// (the device's next registration is then a first one).
import type { DeviceRegistrationState } from '../../model-types.js';
import { csrfField, html, page, postButton } from '../html.js';
import { frame, type Reply, type Route, type RouteContext } from '../routes.js';
import { ServiceFailure, withVersion } from '../service.js';
import {
  applyForm,
  type Enrollment,
  enrollmentFields,
  type FormErrors,
  fieldOf,
  formValues,
  type Kind,
  reprovisionName,
} from './enrollment-form.js';
import type { ResourceView } from './overview.js';

const KIND = '(group|individual)';
const collection = (kind: Kind) => (kind === 'group' ? '/enrollmentGroups' : '/enrollments');
const idOf = (e: Enrollment) => e.enrollmentGroupId ?? e.registrationId ?? '';
const pathOf = (kind: Kind, id: string) => `/enrollments/${kind}/${encodeURIComponent(id)}`;
const noun = (kind: Kind) => (kind === 'group' ? 'enrollment group' : 'individual enrollment');

export const enrollmentRoutes: Route[] = [
  { method: 'GET', path: /^\/enrollments$/, handle: (context) => list(context) },
  { method: 'GET', path: new RegExp(`^/enrollments/new/${KIND}$`), handle: (c, [kind]) => createForm(c, kind as Kind) },
  { method: 'POST', path: new RegExp(`^/enrollments/new/${KIND}$`), handle: (c, [kind]) => create(c, kind as Kind) },
  { method: 'GET', path: new RegExp(`^/enrollments/${KIND}/([^/]+)$`), handle: (c, [kind, id]) => detail(c, kind as Kind, id!, {}) },
  { method: 'POST', path: new RegExp(`^/enrollments/${KIND}/([^/]+)$`), handle: (c, [kind, id]) => save(c, kind as Kind, id!) },
  {
    method: 'POST',
    path: new RegExp(`^/enrollments/${KIND}/([^/]+)/keys$`),
    handle: (c, [kind, id]) => detail(c, kind as Kind, id!, { reveal: true }),
  },
  { method: 'POST', path: new RegExp(`^/enrollments/${KIND}/([^/]+)/delete$`), handle: (c, [kind, id]) => remove(c, kind as Kind, id!) },
  {
    method: 'POST',
    path: new RegExp(`^/enrollments/${KIND}/([^/]+)/registrations/([^/]+)/delete$`),
    handle: (c, [kind, id, registrationId]) => removeRegistration(c, kind as Kind, id!, registrationId!),
  },
];

async function list(context: RouteContext): Promise<Reply> {
  const [groups, individuals] = await Promise.all([
    context.service.query<Enrollment>('/enrollmentGroups/query'),
    context.service.query<Enrollment>('/enrollments/query'),
  ]);
  const table = (kind: Kind, items: Enrollment[]) =>
    items.length === 0
      ? html`<p>None yet.</p>`
      : html`<table><thead><tr><th scope="col">${kind === 'group' ? 'Group' : 'Registration ID'}</th>${
          kind === 'individual' ? html`<th scope="col">Device ID</th>` : ''
        }<th scope="col">Status</th><th scope="col">Attestation</th><th scope="col">Allocation policy</th><th scope="col">IoT hubs</th></tr></thead><tbody>${items.map(
          (e) =>
            html`<tr data-enrollment="${idOf(e)}"><th scope="row"><a href="${pathOf(kind, idOf(e))}">${idOf(e)}</a></th>${
              kind === 'individual' ? html`<td>${e.deviceId ?? e.registrationId}</td>` : ''
            }<td>${e.provisioningStatus ?? 'enabled'}</td><td>${e.attestation?.type ?? '–'}</td><td>${e.allocationPolicy ?? '(instance policy)'}</td><td>${
              e.iotHubs?.length ? e.iotHubs.join(', ') : 'every linked hub'
            }</td></tr>`,
        )}</tbody></table>`;
  const body = html`<section aria-labelledby="groups-title"><h2 id="groups-title">Enrollment groups</h2>${table('group', groups)}
<p><a href="/enrollments/new/group">Add enrollment group</a></p></section>
<section aria-labelledby="individual-title"><h2 id="individual-title">Individual enrollments</h2>${table('individual', individuals)}
<p><a href="/enrollments/new/individual">Add individual enrollment</a></p></section>`;
  return { html: page({ title: 'Manage enrollments', active: '/enrollments', body, ...frame(context) }) };
}

async function linkedHubNames(context: RouteContext): Promise<string[]> {
  return (await context.service.json<ResourceView>('GET', '/resource')).properties.iotHubs.map((h) => h.name);
}

async function createForm(context: RouteContext, kind: Kind, form?: { values: URLSearchParams; errors: FormErrors }): Promise<Reply> {
  const body = html`<form method="post" action="/enrollments/new/${kind}" class="card" novalidate>${csrfField(context.csrf)}${enrollmentFields(
    {
      kind,
      creating: true,
      values: form?.values ?? new URLSearchParams(),
      errors: form?.errors ?? {},
      linkedHubs: await linkedHubNames(context),
    },
  )}<p class="hint">Symmetric-key attestation (X.509 enrollments: the <code>dps</code> commands).</p><button type="submit">Save</button> <a href="/enrollments">Cancel</a></form>`;
  return {
    ...(form && { status: 400 }),
    html: page({ title: `Add ${noun(kind)}`, active: '/enrollments', body, ...frame(context) }),
  };
}

async function create(context: RouteContext, kind: Kind): Promise<Reply> {
  const values = context.form;
  const errors: FormErrors = {};
  const id = (values.get('id') ?? '').trim();
  if (id === '') errors.id = `Give the ${kind === 'group' ? 'enrollment group ID' : 'registration ID'}`;
  const base: Enrollment = kind === 'group' ? { enrollmentGroupId: id } : { registrationId: id };
  base.attestation = { type: 'symmetricKey', symmetricKey: {} };
  const enrollment = applyForm(base, values, errors);
  if (Object.keys(errors).length > 0) return createForm(context, kind, { values, errors });
  const existing = await context.service.request('GET', withVersion(`${collection(kind)}/${encodeURIComponent(id)}`));
  if (existing.status === 200) {
    return createForm(context, kind, { values, errors: { id: `An ${noun(kind)} named ${id} exists already: edit it instead` } });
  }
  try {
    await context.service.json('PUT', withVersion(`${collection(kind)}/${encodeURIComponent(id)}`), { body: enrollment });
  } catch (error) {
    if (!(error instanceof ServiceFailure)) throw error;
    return createForm(context, kind, { values, errors: { [fieldOf(error.message)]: error.message } });
  }
  return { redirect: pathOf(kind, id), flash: { kind: 'ok', text: `Created the ${noun(kind)} ${id}` } };
}

async function detail(
  context: RouteContext,
  kind: Kind,
  id: string,
  options: { reveal?: boolean; form?: { values: URLSearchParams; errors: FormErrors } },
): Promise<Reply> {
  const response = await context.service.request('GET', withVersion(`${collection(kind)}/${encodeURIComponent(id)}`));
  if (response.status === 404) return { redirect: '/enrollments', flash: { kind: 'error', text: `There is no ${noun(kind)} ${id}` } };
  if (response.status !== 200) throw new ServiceFailure(response.status, undefined, `The service API answered ${response.status}`);
  const enrollment = response.body as Enrollment;
  const [linkedHubs, records] = await Promise.all([linkedHubNames(context), registrations(context, kind, id)]);
  const keys = enrollment.attestation?.symmetricKey;
  const keyRows = keys
    ? options.reveal
      ? html`<dt>Primary key</dt><dd><code data-key="primary">${keys.primaryKey ?? ''}</code></dd><dt>Secondary key</dt><dd><code data-key="secondary">${
          keys.secondaryKey ?? ''
        }</code></dd>`
      : html`<dt>Keys</dt><dd>hidden ${postButton(`${pathOf(kind, id)}/keys`, 'Show keys', context.csrf, { className: 'secondary' })}</dd>`
    : '';
  const base = `${pathOf(kind, id)}/registrations`;
  const recordRows =
    records.length === 0
      ? html`<p>No device has registered through this enrollment yet.</p>`
      : html`<table><thead><tr><th scope="col">Registration ID</th><th scope="col">Status</th><th scope="col">Assigned hub</th><th scope="col">Device ID</th>
<th scope="col">Last updated</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead><tbody>${records.map(
          (r) =>
            html`<tr data-registration="${r.registrationId}"><th scope="row">${r.registrationId}</th><td>${r.status}${r.substatus ? ` (${r.substatus})` : ''}${
              r.errorCode ? html`<br><span class="error">${r.errorCode} ${r.errorMessage ?? ''}</span>` : ''
            }</td><td>${r.assignedHub ?? '–'}</td><td>${r.deviceId ?? '–'}</td><td>${r.lastUpdatedDateTimeUtc ?? ''}</td><td>${postButton(
              `${base}/${encodeURIComponent(r.registrationId)}/delete`,
              'Delete record',
              context.csrf,
              {
                confirm: `Delete the registration record of ${r.registrationId}? Its next registration is then a first one.`,
                className: 'danger',
              },
            )}</td></tr>`,
        )}</tbody></table>`;
  const values = options.form?.values ?? formValues(enrollment);
  const body = html`<dl class="facts"><dt>Attestation</dt><dd>${enrollment.attestation?.type ?? '–'}</dd>${keyRows}
<dt>Reprovision policy</dt><dd>${reprovisionName(enrollment.reprovisionPolicy)}</dd><dt>Etag</dt><dd><code>${enrollment.etag ?? ''}</code></dd></dl>
<section aria-labelledby="records-title"><h2 id="records-title">Registration records</h2>${recordRows}</section>
<section aria-labelledby="edit-title"><h2 id="edit-title">Edit</h2>
<form method="post" action="${pathOf(kind, id)}" class="card" novalidate>${csrfField(context.csrf)}<input type="hidden" name="etag" value="${
    values.get('etag') ?? enrollment.etag ?? ''
  }">${enrollmentFields({ kind, creating: false, values, errors: options.form?.errors ?? {}, linkedHubs })}<button type="submit">Save</button></form></section>
<section aria-labelledby="delete-title"><h2 id="delete-title">Delete</h2>${postButton(
    `${pathOf(kind, id)}/delete`,
    `Delete ${noun(kind)}`,
    context.csrf,
    {
      confirm: `Delete the ${noun(kind)} ${id}? Devices can no longer register through it.`,
      className: 'danger',
    },
  )}</section>`;
  return {
    ...(options.form && { status: 400 }),
    html: page({
      title: `${kind === 'group' ? 'Enrollment group' : 'Individual enrollment'} ${id}`,
      active: '/enrollments',
      body,
      ...frame(context),
    }),
  };
}

async function registrations(context: RouteContext, kind: Kind, id: string): Promise<DeviceRegistrationState[]> {
  if (kind === 'group') return context.service.query<DeviceRegistrationState>(`/registrations/${encodeURIComponent(id)}/query`);
  const response = await context.service.request('GET', withVersion(`/registrations/${encodeURIComponent(id)}`));
  return response.status === 200 ? [response.body as DeviceRegistrationState] : [];
}

async function save(context: RouteContext, kind: Kind, id: string): Promise<Reply> {
  const values = context.form;
  const path = withVersion(`${collection(kind)}/${encodeURIComponent(id)}`);
  const current = await context.service.request('GET', path);
  if (current.status !== 200) return { redirect: '/enrollments', flash: { kind: 'error', text: `There is no ${noun(kind)} ${id}` } };
  const errors: FormErrors = {};
  const enrollment = applyForm(current.body as Enrollment, values, errors);
  if (Object.keys(errors).length > 0) return detail(context, kind, id, { form: { values, errors } });
  const etag = values.get('etag') ?? '';
  try {
    await context.service.json('PUT', path, { body: enrollment, headers: etag === '' ? {} : { 'if-match': `"${etag}"` } });
  } catch (error) {
    if (!(error instanceof ServiceFailure)) throw error;
    const message =
      error.status === 412 ? `The ${noun(kind)} changed since this page was loaded: reload it, then make the change again` : error.message;
    return detail(context, kind, id, { form: { values, errors: { [error.status === 412 ? 'form' : fieldOf(message)]: message } } });
  }
  return { redirect: pathOf(kind, id), flash: { kind: 'ok', text: `Saved the ${noun(kind)} ${id}` } };
}

async function remove(context: RouteContext, kind: Kind, id: string): Promise<Reply> {
  try {
    await context.service.json('DELETE', withVersion(`${collection(kind)}/${encodeURIComponent(id)}`));
  } catch (error) {
    if (!(error instanceof ServiceFailure)) throw error;
    return { redirect: '/enrollments', flash: { kind: 'error', text: error.message } };
  }
  return { redirect: '/enrollments', flash: { kind: 'ok', text: `Deleted the ${noun(kind)} ${id}` } };
}

async function removeRegistration(context: RouteContext, kind: Kind, id: string, registrationId: string): Promise<Reply> {
  try {
    await context.service.json('DELETE', withVersion(`/registrations/${encodeURIComponent(registrationId)}`));
  } catch (error) {
    if (!(error instanceof ServiceFailure)) throw error;
    return { redirect: pathOf(kind, id), flash: { kind: 'error', text: error.message } };
  }
  return { redirect: pathOf(kind, id), flash: { kind: 'ok', text: `Deleted the registration record of ${registrationId}` } };
}
