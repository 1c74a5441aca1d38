/*
 * Routing: which handler serves a path. Top-level paths and the discovery documents under /api
 * and /apis go to discovery; a path to a resource is resolved into its type, namespace, name and
 * subresource, then its verb and format, and the request context, completed with them, goes to
 * the verb's handler (the TokenRequest subresource has its own).
 */
import {
  serveTopLevel,
  serveApiVersions,
  serveGroup,
  serveGroupList,
  serveResourceList,
} from './handlers/discovery.js';
import { serveGet, serveList } from './handlers/reads.js';
import { isTokenRequest, serveTokenRequest } from './handlers/token-request.js';
import { serveWatch } from './handlers/watch.js';
import { serveCreate, serveDelete, serveDeleteCollection, servePatch, serveUpdate } from './handlers/writes.js';
import { isTrue, type RequestContext, type ResourcePath, type ResourceRequest, type Verb } from './http/context.js';
import { negotiate } from './http/format.js';
import type { ServerState } from './state.js';
import { methodNotAllowed, pathNotFound } from './status.js';

/** A path below one served group/version: `rest` are the segments after it. */
interface GroupVersionPath {
  group: string;
  version: string;
  rest: string[];
}

const HANDLERS: Record<Verb, (rc: ResourceRequest) => void> = {
  get: serveGet,
  list: serveList,
  watch: serveWatch,
  create: serveCreate,
  update: serveUpdate,
  patch: servePatch,
  delete: serveDelete,
  deletecollection: serveDeleteCollection,
};

/** Serves an authenticated request (throws the ApiError to answer with when it fails). */
export function route(ctx: RequestContext): void {
  const parts = segments(ctx.url.pathname);
  const first = parts[0];
  if (first !== 'api' && first !== 'apis') {
    if (parts.length > 1) throw pathNotFound();
    serveTopLevel(ctx, first);
    return;
  }
  const gv = first === 'api' ? coreGroupPath(ctx, parts) : namedGroupPath(ctx, parts);
  if (!gv) return; // a discovery document was served
  if (gv.rest.length === 0) serveResourceList(ctx, gv.group, gv.version);
  else serveResource(ctx, gv);
}

/** The path's segments, decoded (404 when one cannot be). */
function segments(pathname: string): string[] {
  try {
    return pathname.split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    throw pathNotFound();
  }
}

/** `/api[/v1/...]`: serves `/api` itself; otherwise the core group's path. */
function coreGroupPath(ctx: RequestContext, parts: string[]): GroupVersionPath | undefined {
  if (parts.length === 1) {
    serveApiVersions(ctx);
    return undefined;
  }
  if (parts[1] !== 'v1') throw pathNotFound();
  return { group: '', version: 'v1', rest: parts.slice(2) };
}

/** `/apis[/<group>[/<version>/...]]`: serves `/apis` and `/apis/<group>`; otherwise the group/version's path. */
function namedGroupPath(ctx: RequestContext, parts: string[]): GroupVersionPath | undefined {
  const groups = ctx.state.groups();
  groups.delete('');
  if (parts.length === 1) {
    serveGroupList(ctx, groups);
    return undefined;
  }
  const group = parts[1] as string;
  const versions = groups.get(group);
  if (!versions) throw pathNotFound();
  if (parts.length === 2) {
    serveGroup(ctx, group, versions);
    return undefined;
  }
  const version = parts[2] as string;
  if (!versions.includes(version)) throw pathNotFound();
  return { group, version, rest: parts.slice(3) };
}

/** The resource a path below a group/version addresses (404 if it is not served or the path goes on). */
function resourcePath(state: ServerState, gv: GroupVersionPath): ResourcePath {
  let rest = gv.rest;
  const watchPath = rest[0] === 'watch';
  if (watchPath) rest = rest.slice(1);
  let namespace: string | undefined;
  if (rest[0] === 'namespaces' && rest.length >= 3 && state.find(gv.group, gv.version, rest[2])?.resource.namespaced) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  const [plural, name, subresource, ...extra] = rest;
  const handle = state.find(gv.group, gv.version, plural);
  if (!handle || extra.length > 0) throw pathNotFound();
  return { resource: handle.resource, handle, namespace, name, subresource, watchPath };
}

/** The verb of a request to a resource (405 when the method does not fit the path). */
function verbOf(p: RequestContext & ResourcePath): Verb {
  switch (p.method) {
    case 'GET':
      if (p.watchPath || isTrue(p.query.get('watch'))) {
        if (p.subresource) throw methodNotAllowed();
        return 'watch';
      }
      return p.name ? 'get' : 'list';
    case 'POST':
      if (p.name || p.watchPath) throw methodNotAllowed();
      return 'create';
    case 'PUT':
    case 'PATCH':
      if (!p.name || p.watchPath) throw methodNotAllowed();
      return p.method === 'PUT' ? 'update' : 'patch';
    case 'DELETE':
      if (p.watchPath || p.subresource) throw methodNotAllowed();
      return p.name ? 'delete' : 'deletecollection';
    default:
      throw methodNotAllowed();
  }
}

/** Serves a request to a resource: resolves the path, then the verb and format, and hands it to the verb's handler. */
function serveResource(ctx: RequestContext, gv: GroupVersionPath): void {
  const target = Object.assign(ctx, resourcePath(ctx.state, gv));
  if (isTokenRequest(target)) {
    serveTokenRequest(target);
    return;
  }
  const sub = target.subresource;
  if (sub !== undefined && (sub !== 'status' || !target.resource.statusSubresource)) throw pathNotFound();
  const format = negotiate(ctx.req.headers.accept, ctx.query, ctx.state.opts.tables);
  const rc: ResourceRequest = Object.assign(target, { format, verb: verbOf(target) });
  HANDLERS[rc.verb](rc);
}
