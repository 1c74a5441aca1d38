/*
 * The request context: one object per request that every handler takes. The request handler
 * makes it once the request is read and authenticated (RequestContext); routing completes it
 * with the resource the path addresses, the verb and the negotiated format (ResourceRequest).
 */
import type * as http from 'node:http';
import type { UserInfo } from '../auth.js';
import type { Resource } from '../registry.js';
import type { ResourceHandle } from '../resource.js';
import type { ServerState } from '../state.js';
import type { Format } from './format.js';

/** One request as the server saw it (kept in `requests` for assertions). */
export interface RequestRecord {
  method: string;
  path: string;
  query: string;
  contentType?: string;
  accept?: string;
  userAgent?: string;
  status?: number;
  /** The authenticated user's name. */
  user?: string;
  /** The credential's id (`JTI=…` for service-account tokens), when the user has one. */
  credentialId?: string;
}

/** An authenticated request with its body. */
export interface RequestContext {
  readonly state: ServerState;
  readonly req: http.IncomingMessage;
  readonly res: http.ServerResponse;
  readonly method: string;
  readonly url: URL;
  readonly query: URLSearchParams;
  /** The media type of the body: its Content-Type without parameters ('' when there is none). */
  readonly contentType: string;
  readonly body: Buffer;
  readonly user: UserInfo;
  /** `?dryRun=All`: check and answer, but store nothing. */
  readonly dryRun: boolean;
}

/** The resource a path addresses: `[/watch]/<plural>[/<name>[/<subresource>]]`, under `/namespaces/<ns>/` for namespaced types. */
export interface ResourcePath {
  readonly resource: Resource;
  readonly handle: ResourceHandle;
  readonly namespace: string | undefined;
  readonly name: string | undefined;
  readonly subresource: string | undefined;
  /** The path is a legacy `/watch/` path. */
  readonly watchPath: boolean;
}

/** The Kubernetes verb of a request to a resource, as RBAC and audit logs name it. */
export type Verb = 'get' | 'list' | 'watch' | 'create' | 'update' | 'patch' | 'delete' | 'deletecollection';

/** A request to a resource, completed by routing: the same object as its RequestContext. */
export interface ResourceRequest extends RequestContext, ResourcePath {
  readonly verb: Verb;
  /** How objects are to be sent back (JSON, Table, PartialObjectMetadata). */
  readonly format: Format;
}

/** A boolean query parameter as Kubernetes reads one (`true` or `1`). */
export function isTrue(v: string | null): boolean {
  return v === 'true' || v === '1';
}

/** The media type of a Content-Type header value: without parameters, trimmed. */
export function mediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]?.trim() ?? '';
}
