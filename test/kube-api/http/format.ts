/*
 * Content negotiation: the representation a client asks for with its Accept header and the
 * `includeObject` parameter (plain JSON, a server-side Table, PartialObjectMetadata), and the
 * rendering of objects and lists in it.
 */
import { toTable, type IncludeObject, type KubeObject, type Resource } from '../registry.js';
import { badRequest } from '../status.js';

/** The representation a client negotiated. */
export interface Format {
  /** A meta.k8s.io Table of this version. */
  table?: { version: string };
  /** meta.k8s.io PartialObjectMetadata (or, with `list`, PartialObjectMetadataList) of this version. */
  partialMetadata?: { version: string; list: boolean };
  /** What the rows of a Table carry. */
  includeObject: IncludeObject;
}

/** One page of a list: its items, the list's resourceVersion and more list metadata (continue, remainingItemCount). */
export interface ListPage {
  items: KubeObject[];
  resourceVersion: string;
  meta: Record<string, unknown>;
}

const INCLUDE_OBJECT: readonly string[] = ['None', 'Metadata', 'Object'];
const META_VERSIONS: readonly string[] = ['v1', 'v1beta1'];

/** The parameters of one media range of an Accept header (`as`, `g`, `v`, ...). */
function mediaParams(params: string[]): Record<string, string> {
  const p: Record<string, string> = {};
  for (const kv of params) {
    const i = kv.indexOf('=');
    if (i > 0) p[kv.slice(0, i).trim()] = kv.slice(i + 1).trim();
  }
  return p;
}

/** The first media range of an Accept header that the server can serve, as a format ({} for plain JSON). */
function parseAccept(accept: string | undefined): Omit<Format, 'includeObject'> {
  if (!accept) return {};
  for (const range of accept.split(',')) {
    const [type, ...params] = range.split(';').map((s) => s.trim());
    if (type === '*/*' || type === 'application/*') return {};
    if (type !== 'application/json' && type !== 'application/yaml') continue;
    const p = mediaParams(params);
    if (!p.as) return {};
    if (p.g !== 'meta.k8s.io' || !META_VERSIONS.includes(p.v ?? '')) continue;
    const version = p.v as string;
    if (p.as === 'Table') return { table: { version } };
    if (p.as === 'PartialObjectMetadata' || p.as === 'PartialObjectMetadataList')
      return { partialMetadata: { version, list: p.as === 'PartialObjectMetadataList' } };
  }
  return {};
}

/** The format of a request: its Accept header, Tables only when the server serves them, and `includeObject` (400 if unknown). */
export function negotiate(accept: string | undefined, query: URLSearchParams, tables: boolean): Format {
  const format = parseAccept(accept);
  if (!tables) delete format.table;
  const includeObject = query.get('includeObject') ?? 'Metadata';
  if (!INCLUDE_OBJECT.includes(includeObject)) throw badRequest(`includeObject: Unsupported value: "${includeObject}"`);
  return { ...format, includeObject: includeObject as IncludeObject };
}

function partialObjectMetadata(version: string, o: KubeObject): Record<string, unknown> {
  return { kind: 'PartialObjectMetadata', apiVersion: `meta.k8s.io/${version}`, metadata: o.metadata ?? {} };
}

/** One object in the format: a one-row Table (with the column definitions unless `withColumns` is false), its metadata, or itself. */
export function renderObject(r: Resource, obj: KubeObject, f: Format, withColumns = true): unknown {
  if (f.table) {
    return toTable(r, [obj], {
      tableVersion: f.table.version,
      includeObject: f.includeObject,
      resourceVersion: obj.metadata?.resourceVersion ?? '',
      withColumns,
    });
  }
  if (f.partialMetadata) return partialObjectMetadata(f.partialMetadata.version, obj);
  return obj;
}

/** A list in plain JSON; the items of built-in types carry no kind and apiVersion, as the real server sends them. */
export function listBody(r: Resource, page: ListPage): Record<string, unknown> {
  const items = page.items.map((o) => {
    if (!r.builtin) return o;
    const c = { ...o };
    delete c.kind;
    delete c.apiVersion;
    return c;
  });
  return {
    kind: r.listKind,
    apiVersion: r.apiVersion,
    metadata: { resourceVersion: page.resourceVersion, ...page.meta },
    items,
  };
}

/** A list in the format: a Table, a PartialObjectMetadataList or the plain list. */
export function renderList(r: Resource, page: ListPage, f: Format): Record<string, unknown> {
  const metadata = { resourceVersion: page.resourceVersion, ...page.meta };
  if (f.table) {
    const opts = { tableVersion: f.table.version, includeObject: f.includeObject };
    return toTable(r, page.items, { ...opts, resourceVersion: page.resourceVersion, listMeta: page.meta });
  }
  if (f.partialMetadata) {
    const v = f.partialMetadata.version;
    const items = page.items.map((o) => partialObjectMetadata(v, o));
    return { kind: 'PartialObjectMetadataList', apiVersion: `meta.k8s.io/${v}`, metadata, items };
  }
  return listBody(r, page);
}
