/*
 * Kubernetes `Status` error bodies for the test API server: the ApiError type that request
 * handlers throw, and constructors for the errors a real kube-apiserver answers with
 * (NotFound, AlreadyExists, Conflict, Expired, Invalid, ...), worded like the real ones.
 */

/** The `details` member of a Kubernetes Status object. */
export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  uid?: string;
  causes?: Array<{ reason?: string; message?: string; field?: string }>;
  retryAfterSeconds?: number;
}

/** A Kubernetes `Status` object as sent on the wire. */
export interface StatusObject {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure' | 'Success';
  message?: string;
  reason?: string;
  details?: StatusDetails;
  code: number;
}

/** An error that the server turns into an HTTP response carrying a Status body with `code`. */
export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: StatusDetails,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** The Status body for this error. */
  toStatus(): StatusObject {
    return statusBody(this.code, this.reason, this.message, this.details);
  }
}

const REASONS: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  405: 'MethodNotAllowed',
  406: 'NotAcceptable',
  409: 'Conflict',
  410: 'Expired',
  413: 'RequestEntityTooLarge',
  415: 'UnsupportedMediaType',
  422: 'Invalid',
  429: 'TooManyRequests',
  500: 'InternalError',
  503: 'ServiceUnavailable',
  504: 'Timeout',
};

/** The Status `reason` a real apiserver uses for an HTTP status code ('' when it has none). */
export function reasonForCode(code: number): string {
  return REASONS[code] ?? '';
}

/** Builds a Status object; empty reason and absent details are left out as the real server does. */
export function statusBody(code: number, reason: string, message: string, details?: StatusDetails): StatusObject {
  const s: StatusObject = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', code };
  if (message) s.message = message;
  if (reason) s.reason = reason;
  if (details) s.details = details;
  return s;
}

/** `resource` as a real server names it in messages: `nodes` or `peers.kilo.squat.ai`. */
export function qualifiedResource(plural: string, group: string): string {
  return group ? `${plural}.${group}` : plural;
}

function details(plural: string, group: string, name: string): StatusDetails {
  const d: StatusDetails = { name, kind: plural };
  if (group) d.group = group;
  return d;
}

/** An error about one object, `<resource> "<name>" <what>`, naming the object in its details. */
function objectError(
  code: number,
  reason: string,
  o: { plural: string; group: string; name: string },
  what: string,
): ApiError {
  const message = `${qualifiedResource(o.plural, o.group)} "${o.name}" ${what}`;
  return new ApiError(code, reason, message, details(o.plural, o.group, o.name));
}

/** 404 NotFound for a named object. */
export function notFound(plural: string, group: string, name: string): ApiError {
  return objectError(404, 'NotFound', { plural, group, name }, 'not found');
}

/** 404 NotFound for a URL the server does not serve. */
export function pathNotFound(): ApiError {
  return new ApiError(404, 'NotFound', 'the server could not find the requested resource', {});
}

/** 409 AlreadyExists on create. */
export function alreadyExists(plural: string, group: string, name: string): ApiError {
  return objectError(409, 'AlreadyExists', { plural, group, name }, 'already exists');
}

/** 409 Conflict for a stale resourceVersion (optimistic concurrency). */
export function conflict(plural: string, group: string, name: string, why?: string): ApiError {
  return new ApiError(
    409,
    'Conflict',
    `Operation cannot be fulfilled on ${qualifiedResource(plural, group)} "${name}": ${
      why ?? 'the object has been modified; please apply your changes to the latest version and try again'
    }`,
    details(plural, group, name),
  );
}

/** 410 Expired for a resourceVersion older than the retained history. */
export function expired(requested: number, oldest: number): ApiError {
  return new ApiError(410, 'Expired', `too old resource version: ${requested} (${oldest})`);
}

/** 422 Invalid with one field cause, worded like `Node "x" is invalid: field: message`. */
export function invalid(kind: string, group: string, name: string, field: string, message: string): ApiError {
  const d: StatusDetails = { name, kind, causes: [{ reason: 'FieldValueInvalid', message, field }] };
  if (group) d.group = group;
  return new ApiError(422, 'Invalid', `${kind} "${name}" is invalid: ${field}: ${message}`, d);
}

/** 400 BadRequest with a message. */
export function badRequest(message: string): ApiError {
  return new ApiError(400, 'BadRequest', message);
}

/** 405 MethodNotAllowed. */
export function methodNotAllowed(
  message = 'the server does not allow this method on the requested resource',
): ApiError {
  return new ApiError(405, 'MethodNotAllowed', message, {});
}
