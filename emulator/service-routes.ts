// The DPS service API (api-version 2021-10-01), as Microsoft's azure-iot-provisioning-service
// client calls it (node_modules/azure-iot-provisioning-service/dist/provisioningserviceclient.js):
//   PUT|GET|DELETE /enrollmentGroups/{id}          POST /enrollmentGroups/query
//   PUT|GET|DELETE /enrollments/{id}               POST /enrollments/query      POST /enrollments (bulk)
//   GET|DELETE     /registrations/{id}             POST /registrations/{groupId}/query
//   POST /enrollments/{id}/attestationmechanism    POST /enrollmentGroups/{id}/attestationmechanism
// Collection names are matched ignoring case (the client itself writes 'enrollmentgroups' for the
// attestation mechanism). PUT creates or replaces (keys omitted keep the current ones, or are
// generated); If-Match (an etag or '*') guards PUT and DELETE: 412 on mismatch. DELETE answers 204.
// Queries return every item (the query text is not evaluated); x-ms-max-item-count pages them and
// x-ms-continuation carries on, as the client's Query.next() expects.
import { DpsError, ErrorCodes, notFound } from './dps-errors.js';
import type { DpsModel } from './model.js';
import type { EnrollmentGroupInput, IndividualEnrollment, IndividualEnrollmentInput } from './model-types.js';
import { ifMatch, isObject, noRoute, notAllowed, ServiceErrorCodes, type ServiceRequest, type ServiceResponse } from './service-http.js';

export const SERVICE_API_VERSION = '2021-10-01';
/** DPS limits a bulk operation to 10 enrollments. */
export const MAX_BULK_ENROLLMENTS = 10;

export function isServiceCollection(segment: string | undefined): boolean {
  const name = segment?.toLowerCase();
  return name === 'enrollmentgroups' || name === 'enrollments' || name === 'registrations';
}

export function serviceRoute(model: DpsModel, request: ServiceRequest): ServiceResponse {
  const version = request.query.get('api-version');
  if (version !== SERVICE_API_VERSION) {
    throw new DpsError(
      400,
      ServiceErrorCodes.apiVersion,
      version === null
        ? `The api-version query parameter is missing; the emulator implements ${SERVICE_API_VERSION}`
        : `The api-version '${version.slice(0, 40)}' is not supported; the emulator implements ${SERVICE_API_VERSION}`,
    );
  }
  const [collection, id, action, ...rest] = request.segments;
  const { method } = request;
  if (rest.length > 0) throw noRoute(request);
  switch (collection!.toLowerCase()) {
    case 'enrollmentgroups':
      if (id === undefined) throw noRoute(request);
      if (action === undefined && id === 'query') return only('POST', request, () => page(model.enrollmentGroups(), request));
      if (action?.toLowerCase() === 'attestationmechanism') {
        return only('POST', request, () => ({ status: 200, body: found(model.enrollmentGroup(id), `enrollment group ${id}`).attestation }));
      }
      if (action !== undefined) throw noRoute(request);
      if (method === 'PUT') {
        const input = bodyFor<EnrollmentGroupInput>(request, 'enrollmentGroupId', id);
        return withEtag(model.putEnrollmentGroup(input, ifMatch(request)));
      }
      if (method === 'GET') return withEtag(found(model.enrollmentGroup(id), `enrollment group ${id}`));
      if (method === 'DELETE') return deleted(() => model.deleteEnrollmentGroup(id, ifMatch(request)));
      throw notAllowed(request);
    case 'enrollments':
      if (id === undefined) return only('POST', request, () => bulk(model, request.body));
      if (action === undefined && id === 'query') return only('POST', request, () => page(model.individualEnrollments(), request));
      if (action?.toLowerCase() === 'attestationmechanism') {
        return only('POST', request, () => ({ status: 200, body: found(model.individualEnrollment(id), `enrollment ${id}`).attestation }));
      }
      if (action !== undefined) throw noRoute(request);
      if (method === 'PUT') {
        const input = bodyFor<IndividualEnrollmentInput>(request, 'registrationId', id);
        return withEtag(model.putIndividualEnrollment(input, ifMatch(request)));
      }
      if (method === 'GET') return withEtag(found(model.individualEnrollment(id), `enrollment ${id}`));
      if (method === 'DELETE') return deleted(() => model.deleteIndividualEnrollment(id, ifMatch(request)));
      throw notAllowed(request);
    default: // registrations
      if (id === undefined) throw noRoute(request);
      if (action?.toLowerCase() === 'query') {
        return only('POST', request, () => {
          found(model.enrollmentGroup(id), `enrollment group ${id}`);
          return page(model.registrationsOfGroup(id), request);
        });
      }
      if (action !== undefined) throw noRoute(request);
      if (method === 'GET') return withEtag(found(model.registration(id), `registration ${id}`).state);
      if (method === 'DELETE') return deleted(() => model.deleteRegistration(id, ifMatch(request)));
      throw notAllowed(request);
  }
}

/** The body of a PUT, with the ID from the path (a different ID in the body is a 400). */
function bodyFor<T>(request: ServiceRequest, field: 'enrollmentGroupId' | 'registrationId', id: string): T {
  if (!isObject(request.body))
    throw new DpsError(
      400,
      ErrorCodes.badRequest,
      `The request body must be a JSON object (the ${field === 'registrationId' ? 'enrollment' : 'enrollment group'})`,
    );
  const given = request.body[field];
  if (given !== undefined && given !== null && (typeof given !== 'string' || given.toLowerCase() !== id.toLowerCase())) {
    throw new DpsError(400, ErrorCodes.badRequest, `The ${field} in the body differs from the one in the path (${id})`);
  }
  return { ...request.body, [field]: id } as T;
}

function found<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw notFound(`The ${what} does not exist`);
  return value;
}

function withEtag(value: { etag: string }): ServiceResponse {
  return { status: 200, body: value, headers: { etag: `"${value.etag}"` } };
}

function deleted(run: () => void): ServiceResponse {
  run();
  return { status: 204 };
}

function only(method: string, request: ServiceRequest, run: () => ServiceResponse): ServiceResponse {
  if (request.method !== method) throw notAllowed(request);
  return run();
}

/** One page of a query: x-ms-max-item-count items from x-ms-continuation on. */
function page(items: unknown[], request: ServiceRequest): ServiceResponse {
  if (!isObject(request.body) || typeof request.body.query !== 'string') {
    throw new DpsError(400, ErrorCodes.badRequest, 'A query needs a body like {"query": "*"}');
  }
  const maxText = header(request, 'x-ms-max-item-count');
  const max = maxText === undefined ? items.length : Number(maxText);
  if (!Number.isInteger(max) || max < 0 || (maxText !== undefined && max < 1)) {
    throw new DpsError(400, ErrorCodes.badRequest, 'x-ms-max-item-count must be a whole number of at least 1');
  }
  const token = header(request, 'x-ms-continuation');
  let offset = 0;
  if (token !== undefined) {
    const decoded = /^[A-Za-z0-9+/=]{1,100}$/.test(token) ? Buffer.from(token, 'base64').toString('utf8') : '';
    offset = /^offset:\d{1,9}$/.test(decoded) ? Number(decoded.slice(7)) : NaN;
    if (!Number.isSafeInteger(offset))
      throw new DpsError(400, ErrorCodes.badRequest, 'The x-ms-continuation token is not one this emulator issued');
  }
  const end = Math.min(items.length, offset + Math.max(max, 1));
  const headers: Record<string, string> = {};
  if (end < items.length) headers['x-ms-continuation'] = Buffer.from(`offset:${end}`).toString('base64');
  return { status: 200, body: items.slice(offset, end), headers };
}

/** POST /enrollments: {mode: create|update|updateIfMatchETag|delete, enrollments: [...]}, each applied on its own. */
function bulk(model: DpsModel, body: unknown): ServiceResponse {
  if (!isObject(body) || !Array.isArray(body.enrollments) || typeof body.mode !== 'string') {
    throw new DpsError(
      400,
      ErrorCodes.badRequest,
      'A bulk operation needs {"mode": "create|update|updateIfMatchETag|delete", "enrollments": [...]}',
    );
  }
  const mode = body.mode.toLowerCase();
  if (!['create', 'update', 'updateifmatchetag', 'delete'].includes(mode)) {
    throw new DpsError(
      400,
      ErrorCodes.badRequest,
      `The bulk mode '${body.mode.slice(0, 40)}' is not create, update, updateIfMatchETag or delete`,
    );
  }
  if (body.enrollments.length === 0 || body.enrollments.length > MAX_BULK_ENROLLMENTS) {
    throw new DpsError(400, ErrorCodes.badRequest, `A bulk operation takes 1 to ${MAX_BULK_ENROLLMENTS} enrollments`);
  }
  const errors: Array<{ registrationId: string; errorCode: number; errorStatus: string }> = [];
  for (const item of body.enrollments as unknown[]) {
    const enrollment = (isObject(item) ? item : {}) as Partial<IndividualEnrollment> & Record<string, unknown>;
    const registrationId = typeof enrollment.registrationId === 'string' ? enrollment.registrationId : '';
    try {
      if (mode === 'delete') model.deleteIndividualEnrollment(registrationId);
      else if (mode === 'create' && model.individualEnrollment(registrationId)) {
        throw new DpsError(409, ErrorCodes.conflict, `The enrollment ${registrationId} already exists`);
      } else
        model.putIndividualEnrollment(enrollment as IndividualEnrollmentInput, mode === 'updateifmatchetag' ? enrollment.etag : undefined);
    } catch (error) {
      if (!(error instanceof DpsError)) throw error;
      errors.push({ registrationId, errorCode: error.errorCode, errorStatus: error.message });
    }
  }
  return { status: 200, body: { isSuccessful: errors.length === 0, errors } };
}

function header(request: ServiceRequest, name: string): string | undefined {
  const value = request.headers[name];
  return typeof value === 'string' ? value : undefined;
}
