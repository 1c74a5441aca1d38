/*
 * Reads: get of one object and list of a collection, with label and field selectors,
 * resourceVersion semantics (the current state, `Exact` snapshots, 504 for versions from the
 * future) and pagination over a consistent snapshot (`limit`, `continue`, remainingItemCount).
 */
import type { ResourceRequest } from '../http/context.js';
import { renderList, type ListPage } from '../http/format.js';
import { sendJson, sendObject } from '../http/respond.js';
import { clone } from '../json.js';
import type { KubeObject } from '../registry.js';
import type { ListOptions } from '../resource.js';
import { ApiError, badRequest } from '../status.js';
import type { ObjectStore } from '../store.js';

/** The objects a list starts from: as of resourceVersion `rv`, after the key `after` (a continued list). */
interface ListSource {
  rv: number;
  objs: readonly KubeObject[];
  after: string;
}

const CONTINUE_EXPIRED =
  'The provided continue parameter is too old to display a consistent list result. ' +
  'You can start a new list without the continue parameter, or use the continue token in this response ' +
  'to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent ' +
  'list - objects that were created, modified, or deleted between the time the first chunk was returned ' +
  'and now may show up in the list.';

/** The selectors of a request as list options; a request for one object (a watch of it) selects it by name. */
export function listOptions(q: URLSearchParams, namespace: string | undefined, name?: string): ListOptions {
  const fields = [q.get('fieldSelector') ?? '', name ? `metadata.name=${name}` : ''].filter(Boolean).join(',');
  const o: ListOptions = { labelSelector: q.get('labelSelector') ?? '', fieldSelector: fields };
  if (namespace) o.namespace = namespace;
  return o;
}

/** A resourceVersion parameter (400 unless it is a non-negative integer). */
export function parseRv(s: string): number {
  if (!/^[0-9]+$/.test(s)) throw badRequest(`resourceVersion: Invalid value: "${s}": must be a non-negative integer`);
  return Number(s);
}

/** The key objects are listed in order of: `<namespace>/<name>`, or the name of a cluster-scoped object. */
function objectKey(o: KubeObject): string {
  const m = o.metadata ?? {};
  return m.namespace ? `${m.namespace}/${m.name ?? ''}` : (m.name ?? '');
}

/** GET of one object. */
export function serveGet(rc: ResourceRequest): void {
  sendObject(rc, 200, rc.handle.mustGet(rc.name as string, rc.namespace));
}

/** GET of a collection: one page of the objects the selectors match. */
export function serveList(rc: ResourceRequest): void {
  const opts = listOptions(rc.query, rc.namespace);
  const matches = rc.handle.matcher(opts);
  const limit = parseLimit(rc.query);
  const source = listSource(rc);
  const selected = source.objs.filter((o) => objectKey(o) > source.after).filter(matches);
  const page = paginate(selected, limit, source.rv, !opts.labelSelector && !opts.fieldSelector);
  sendJson(rc.res, 200, renderList(rc.resource, page, rc.format));
}

function parseLimit(q: URLSearchParams): number {
  const limitParam = q.get('limit');
  const limit = limitParam ? Number(limitParam) : 0;
  if (!Number.isInteger(limit) || limit < 0) throw badRequest(`limit: Invalid value: "${limitParam ?? ''}"`);
  return limit;
}

/** What a list reads: the snapshot of its continue token, the `Exact` snapshot it asks for, or the current state. */
function listSource(rc: ResourceRequest): ListSource {
  const store = rc.state.store;
  const key = rc.resource.key;
  const cont = rc.query.get('continue') ?? '';
  if (cont) return continueFrom(store, key, cont);
  const rvParam = rc.query.get('resourceVersion') ?? '';
  const match = rc.query.get('resourceVersionMatch') ?? '';
  if (match === 'Exact') {
    if (!rvParam || rvParam === '0')
      throw badRequest(
        'resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"',
      );
    const rv = parseRv(rvParam);
    return { rv, objs: store.snapshotShared(key, rv), after: '' };
  }
  if (match && match !== 'NotOlderThan') throw badRequest(`resourceVersionMatch: Unsupported value: "${match}"`);
  if (match && !rvParam)
    throw badRequest(
      'resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided',
    );
  if (rvParam && rvParam !== '0') {
    const want = parseRv(rvParam);
    if (want > store.rv) store.checkRetained(want);
  }
  return { rv: store.rv, objs: store.listShared(key), after: '' };
}

/** The snapshot a continue token points into (400 if it is not one of ours, 410 once compacted away). */
function continueFrom(store: ObjectStore, key: string, cont: string): ListSource {
  let token: { rv?: unknown; start?: unknown };
  try {
    token = JSON.parse(Buffer.from(cont, 'base64url').toString('utf8')) as { rv?: unknown; start?: unknown };
  } catch {
    throw badRequest('continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)');
  }
  if (typeof token.rv !== 'number' || typeof token.start !== 'string') throw badRequest('continue key is not valid');
  try {
    return { rv: token.rv, objs: store.snapshotShared(key, token.rv), after: token.start };
  } catch (err) {
    if (err instanceof ApiError && err.code === 410) throw new ApiError(410, 'Expired', CONTINUE_EXPIRED);
    throw err;
  }
}

/** The first `limit` objects (all with 0) and, when more remain, a continue token (and their count if `countRemaining`). */
function paginate(objs: KubeObject[], limit: number, listRv: number, countRemaining: boolean): ListPage {
  const meta: Record<string, unknown> = {};
  let items = objs;
  if (limit > 0 && objs.length > limit) {
    items = objs.slice(0, limit);
    const start = objectKey(items[items.length - 1] as KubeObject);
    meta.continue = Buffer.from(JSON.stringify({ rv: listRv, start })).toString('base64url');
    if (countRemaining) meta.remainingItemCount = objs.length - limit;
  }
  // Only the page is copied: the stored objects are never changed in place.
  return { items: items.map((o) => clone(o)), resourceVersion: String(listRv), meta };
}
