/*
 * The three patch formats a kube-apiserver accepts, applied to plain JSON values:
 * JSON merge patch (RFC 7386), JSON patch (RFC 6902) and Kubernetes strategic merge patch
 * (maps merge, `null` deletes, lists replace unless the schema names a merge key or a
 * primitive merge, with the `$patch`, `$retainKeys`, `$setElementOrder/` and
 * `$deleteFromPrimitiveList/` directives). Errors are thrown as PatchError.
 */
import { clone, deepEqual, isObject, put, type JsonObject } from './json.js';

/** A patch that is malformed (`decode`, HTTP 400) or does not apply to the document (`apply`, HTTP 422). */
export class PatchError extends Error {
  constructor(
    readonly kind: 'decode' | 'apply',
    message: string,
  ) {
    super(message);
    this.name = 'PatchError';
  }
}

/** Applies an RFC 7386 JSON merge patch and returns the new document (inputs are not modified). */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return clone(patch);
  const result: JsonObject = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete result[k];
    else put(result, k, mergePatch(result[k], v));
  }
  return result;
}

function parsePointer(pointer: string): string[] {
  if (pointer === '') return [];
  if (!pointer.startsWith('/')) throw new PatchError('apply', `invalid JSON pointer "${pointer}"`);
  return pointer
    .slice(1)
    .split('/')
    .map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function arrayIndex(arr: unknown[], token: string, allowEnd: boolean, path: string): number {
  if (token === '-' && allowEnd) return arr.length;
  if (!/^(0|[1-9][0-9]*)$/.test(token)) throw new PatchError('apply', `invalid array index "${token}" in ${path}`);
  const i = Number(token);
  if (i > arr.length || (!allowEnd && i === arr.length))
    throw new PatchError('apply', `array index ${i} out of bounds in ${path}`);
  return i;
}

/** One step of a JSON pointer: the member or element `t` of `cur` (an apply error when there is none). */
function child(cur: unknown, t: string, path: string): unknown {
  if (Array.isArray(cur)) return cur[arrayIndex(cur, t, false, path)];
  if (isObject(cur) && Object.prototype.hasOwnProperty.call(cur, t)) return cur[t];
  throw new PatchError('apply', `doc is missing path: "${path}"`);
}

/** The container of the value a pointer names and its last token; undefined for the whole document. */
function locate(doc: unknown, path: string): { parent: unknown[] | JsonObject; last: string } | undefined {
  const tokens = parsePointer(path);
  if (tokens.length === 0) return undefined;
  let cur = doc;
  for (const t of tokens.slice(0, -1)) cur = child(cur, t, path);
  if (!Array.isArray(cur) && !isObject(cur)) throw new PatchError('apply', `doc is missing path: "${path}"`);
  return { parent: cur, last: tokens[tokens.length - 1] as string };
}

function getAt(doc: unknown, path: string): unknown {
  let cur = doc;
  for (const t of parsePointer(path)) cur = child(cur, t, path);
  return cur;
}

function addAt(doc: unknown, path: string, value: unknown): unknown {
  const at = locate(doc, path);
  if (!at) return value;
  if (Array.isArray(at.parent)) at.parent.splice(arrayIndex(at.parent, at.last, true, path), 0, value);
  else put(at.parent, at.last, value);
  return doc;
}

function removeAt(doc: unknown, path: string): unknown {
  const at = locate(doc, path);
  if (!at) throw new PatchError('apply', 'cannot remove the whole document');
  const { parent, last } = at;
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, last, false, path), 1);
  else {
    if (!Object.prototype.hasOwnProperty.call(parent, last))
      throw new PatchError('apply', `unable to remove nonexistent key: ${last}: missing value`);
    delete parent[last];
  }
  return doc;
}

function replaceAt(doc: unknown, path: string, value: unknown): unknown {
  const at = locate(doc, path);
  if (!at) return value;
  const { parent, last } = at;
  if (Array.isArray(parent)) parent[arrayIndex(parent, last, false, path)] = value;
  else {
    if (!Object.prototype.hasOwnProperty.call(parent, last))
      throw new PatchError('apply', `replace operation does not apply: doc is missing key: ${path}: missing value`);
    put(parent, last, value);
  }
  return doc;
}

/** Applies an RFC 6902 JSON patch (add, remove, replace, move, copy, test) and returns the new document. */
export function jsonPatch(target: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops))
    throw new PatchError('decode', 'json: cannot unmarshal object into Go value of type jsonpatch.Patch');
  let doc = clone(target);
  for (const op of ops) doc = applyOperation(doc, op);
  return doc;
}

/** Applies one JSON patch operation to `doc` (in place where it can) and returns the document. */
function applyOperation(doc: unknown, op: unknown): unknown {
  if (!isObject(op) || typeof op.op !== 'string')
    throw new PatchError('decode', 'invalid JSON patch operation: missing "op"');
  const path = op.path;
  if (typeof path !== 'string') throw new PatchError('apply', `${op.op} operation is missing "path"`);
  const needValue = () => {
    if (!Object.prototype.hasOwnProperty.call(op, 'value'))
      throw new PatchError('apply', `${op.op} operation is missing "value"`);
    return clone(op.value);
  };
  const from = () => {
    if (typeof op.from !== 'string') throw new PatchError('apply', `${op.op} operation is missing "from"`);
    return op.from;
  };
  switch (op.op) {
    case 'add':
      return addAt(doc, path, needValue());
    case 'remove':
      return removeAt(doc, path);
    case 'replace':
      return replaceAt(doc, path, needValue());
    case 'move':
      return moveAt(doc, from(), path);
    case 'copy':
      return addAt(doc, path, clone(getAt(doc, from())));
    case 'test':
      testAt(doc, path, needValue());
      return doc;
    default:
      throw new PatchError('decode', `Unexpected kind: ${op.op}`);
  }
}

function moveAt(doc: unknown, from: string, path: string): unknown {
  if (path === from) return doc;
  if (path.startsWith(from + '/')) throw new PatchError('apply', `cannot move "${from}" into its own child "${path}"`);
  const v = getAt(doc, from);
  return addAt(removeAt(doc, from), path, v);
}

function testAt(doc: unknown, path: string, expected: unknown): void {
  let actual: unknown;
  try {
    actual = getAt(doc, path);
  } catch {
    actual = undefined;
  }
  if (!deepEqual(actual, expected)) throw new PatchError('apply', `testing value ${path} failed: test failed`);
}

/** How strategic merge treats one list, by dotted path from the object root (e.g. `status.addresses`). */
export interface ListStrategy {
  /** Elements are maps merged by this key (patchStrategy "merge" with patchMergeKey). */
  mergeKey?: string;
  /** Elements are scalars; the patch list is unioned into the live list (patchStrategy "merge"). */
  primitiveMerge?: boolean;
}

/** The strategic-merge schema of a kind: list strategies by dotted path; unlisted lists are replaced. */
export type StrategicSchema = Record<string, ListStrategy>;

function stripDirectives(v: unknown): unknown {
  if (Array.isArray(v))
    return v
      .filter((e) => !(isObject(e) && e.$patch !== undefined && Object.keys(e).length === 1))
      .map(stripDirectives);
  if (!isObject(v)) return v;
  const out: JsonObject = {};
  for (const [k, val] of Object.entries(v)) {
    if (k.startsWith('$')) continue;
    if (val === null) continue;
    put(out, k, stripDirectives(val));
  }
  return out;
}

function smpMap(
  orig: JsonObject | undefined,
  patch: JsonObject,
  path: string,
  schema: StrategicSchema,
): JsonObject | undefined {
  const directive = patch.$patch;
  if (directive === 'delete') return undefined;
  if (directive === 'replace') return stripDirectives(patch) as JsonObject;
  if (directive !== undefined) throw new PatchError('decode', `Unknown patch type: ${String(directive)}`);
  const result: JsonObject = isObject(orig) ? { ...orig } : {};
  const fieldPath = (field: string) => (path ? `${path}.${field}` : field);
  const orders: Array<[string, unknown[]]> = [];
  for (const [key, value] of Object.entries(patch)) {
    if (key === '$patch' || key === '$retainKeys') continue;
    if (key.startsWith('$setElementOrder/')) {
      if (Array.isArray(value)) orders.push([key.slice('$setElementOrder/'.length), value]);
    } else if (key.startsWith('$deleteFromPrimitiveList/')) {
      const field = key.slice('$deleteFromPrimitiveList/'.length);
      const cur = result[field];
      if (Array.isArray(cur) && Array.isArray(value))
        put(
          result,
          field,
          cur.filter((x) => !value.some((d) => deepEqual(d, x))),
        );
    } else if (key.startsWith('$')) {
      throw new PatchError('decode', `unknown strategic merge directive ${key}`);
    } else {
      const merged = smpValue(result[key], value, fieldPath(key), schema);
      if (merged === undefined) delete result[key];
      else put(result, key, merged);
    }
  }
  if (Array.isArray(patch.$retainKeys)) {
    const keep = new Set(patch.$retainKeys.map(String));
    for (const k of Object.keys(result)) if (!keep.has(k)) delete result[k];
  }
  for (const [field, order] of orders) setElementOrder(result, field, order, schema[fieldPath(field)]);
  return result;
}

/** A field's value after merging a patch value into it; undefined when the field goes (null, or a `$patch: delete` map). */
function smpValue(cur: unknown, value: unknown, path: string, schema: StrategicSchema): unknown {
  if (value === null) return undefined;
  if (isObject(value)) return smpMap(isObject(cur) ? cur : undefined, value, path, schema);
  if (Array.isArray(value)) return smpList(cur, value, path, schema);
  return value;
}

/** `$setElementOrder/<field>`: sorts a merged list (by merge key, for lists of maps) in the order given; others go last. */
function setElementOrder(
  result: JsonObject,
  field: string,
  order: unknown[],
  strategy: ListStrategy | undefined,
): void {
  const list = result[field];
  if (!Array.isArray(list) || !strategy) return;
  const keyOf = (e: unknown) => (strategy.mergeKey && isObject(e) ? e[strategy.mergeKey] : e);
  const orderKeys = order.map((o) => keyOf(o));
  const ranked = list.map((e, i) => {
    const r = orderKeys.findIndex((k) => deepEqual(k, keyOf(e)));
    return { e, r: r === -1 ? orderKeys.length + i : r };
  });
  ranked.sort((a, b) => a.r - b.r);
  put(
    result,
    field,
    ranked.map((x) => x.e),
  );
}

function smpList(orig: unknown, patch: unknown[], path: string, schema: StrategicSchema): unknown[] {
  const strategy = schema[path];
  const replaceAll = patch.some((e) => isObject(e) && e.$patch === 'replace');
  if (!strategy || replaceAll || !Array.isArray(orig)) return stripDirectives(patch) as unknown[];
  const result = [...orig];
  if (strategy.primitiveMerge) {
    for (const v of patch) if (!result.some((x) => deepEqual(x, v))) result.push(clone(v));
    return result;
  }
  const mk = strategy.mergeKey;
  if (!mk) return stripDirectives(patch) as unknown[];
  for (const p of patch) {
    if (!isObject(p))
      throw new PatchError('decode', `${path}: list element is not a map, but the list merges by key "${mk}"`);
    const idx = result.findIndex((e) => isObject(e) && deepEqual(e[mk], p[mk]));
    if (p.$patch === 'delete') {
      for (let i = result.length - 1; i >= 0; i--) {
        const e = result[i];
        if (isObject(e) && deepEqual(e[mk], p[mk])) result.splice(i, 1);
      }
      continue;
    }
    if (idx >= 0) {
      const merged = smpMap(result[idx] as JsonObject, p, path, schema);
      if (merged === undefined) result.splice(idx, 1);
      else result[idx] = merged;
    } else {
      const fresh = smpMap(undefined, p, path, schema);
      if (fresh !== undefined) result.push(fresh);
    }
  }
  return result;
}

/** Applies a Kubernetes strategic merge patch under `schema` and returns the new document. */
export function strategicMergePatch(target: unknown, patch: unknown, schema: StrategicSchema): unknown {
  if (!isObject(patch)) throw new PatchError('decode', 'a strategic merge patch must be a JSON object');
  const out = smpMap(isObject(target) ? target : undefined, patch, '', schema);
  return out ?? {};
}

/** The strategic-merge list strategies of ObjectMeta, shared by every kind. */
export const OBJECT_META_SCHEMA: StrategicSchema = {
  'metadata.finalizers': { primitiveMerge: true },
  'metadata.ownerReferences': { mergeKey: 'uid' },
};

/** The strategic-merge list strategies of core/v1 Node (from the Go struct tags). */
export const NODE_SCHEMA: StrategicSchema = {
  ...OBJECT_META_SCHEMA,
  'spec.podCIDRs': { primitiveMerge: true },
  'status.addresses': { mergeKey: 'type' },
  'status.conditions': { mergeKey: 'type' },
  'status.volumesAttached': { mergeKey: 'name' },
};
