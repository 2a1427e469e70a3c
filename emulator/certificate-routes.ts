// The CA certificates of the instance over the management API (what ARM's
// Microsoft.Devices/provisioningServices/certificates and `az iot dps certificate` do), on the
// service port beside /resource:
//   GET    /certificates                              {"value": [certificate, ...]}
//   GET    /certificates/{name}
//   PUT    /certificates/{name}                       {"properties": {"certificate": "<PEM or base64 DER>", "isVerified": false}}
//   DELETE /certificates/{name}                       (If-Match)
//   POST   /certificates/{name}/generateVerificationCode   → properties.verificationCode
//   POST   /certificates/{name}/verify                {"certificate": "<PEM>"}: CN = the code, signed by the CA's key
// Each answer is ARM's CertificateResponse: {name, etag, type, properties: {subject, expiry,
// thumbprint, isVerified, certificate, created, updated[, verificationCode]}}.
import type { CaCertificateStore } from './ca-certificates.js';
import { invalidConfiguration, notFound } from './dps-errors.js';
import type { CaCertificate } from './model-types.js';
import { ifMatch, isObject, noRoute, notAllowed, type ServiceRequest, type ServiceResponse } from './service-http.js';
import { certificateInfo, parseCertificate } from './x509.js';

export function certificateRoute(store: CaCertificateStore, request: ServiceRequest): ServiceResponse {
  const [, name, action, ...extra] = request.segments;
  if (extra.length > 0) throw noRoute(request);
  const { method } = request;
  if (name === undefined) {
    if (method !== 'GET') throw notAllowed(request);
    return { status: 200, body: { value: store.list().map(view) } };
  }
  if (action === undefined) {
    if (method === 'GET') {
      const certificate = store.get(name);
      if (!certificate) throw notFound(`The certificate ${name} does not exist`);
      return answer(certificate);
    }
    if (method === 'PUT') {
      const body = request.body;
      if (!isObject(body)) throw invalidConfiguration('The body must be {"properties": {"certificate": "<PEM>", "isVerified": false}}');
      const properties = isObject(body.properties) ? body.properties : body;
      return answer(store.put(name, properties.certificate, properties.isVerified, ifMatch(request)));
    }
    if (method === 'DELETE') {
      store.delete(name, ifMatch(request));
      return { status: 204, body: undefined };
    }
    throw notAllowed(request);
  }
  if (method !== 'POST') throw notAllowed(request);
  switch (action.toLowerCase()) {
    case 'generateverificationcode':
      return answer(store.generateVerificationCode(name, ifMatch(request)));
    case 'verify': {
      const body = request.body;
      const proof = isObject(body) ? (isObject(body.properties) ? body.properties.certificate : body.certificate) : undefined;
      return answer(store.verify(name, proof, ifMatch(request)));
    }
    default:
      throw noRoute(request);
  }
}

function answer(certificate: CaCertificate): ServiceResponse {
  return { status: 200, body: view(certificate), headers: { etag: `"${certificate.etag}"` } };
}

function view(certificate: CaCertificate): Record<string, unknown> {
  const info = certificateInfo(parseCertificate(certificate.certificate, certificate.name));
  return {
    name: certificate.name,
    etag: certificate.etag,
    type: 'Microsoft.Devices/provisioningServices/Certificates',
    properties: {
      subject: info.subjectName,
      expiry: info.notAfterUtc,
      thumbprint: info.sha1Thumbprint,
      isVerified: certificate.isVerified,
      certificate: certificate.certificate,
      created: certificate.created,
      updated: certificate.updated,
      ...(certificate.verificationCode !== undefined && { verificationCode: certificate.verificationCode }),
    },
  };
}
