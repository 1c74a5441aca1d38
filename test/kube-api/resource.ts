/*
 * Kubernetes write semantics for one resource type of the test API server, shared by the
 * HTTP handlers and the direct test helpers: create (uid, creationTimestamp, generateName,
 * 409 AlreadyExists), update with optimistic concurrency (409 Conflict on a stale
 * resourceVersion), status-subresource rules, the three patch formats, no-op writes that
 * keep the resourceVersion and emit no event, finalizers and delete preconditions.
 */
import { randomUUID } from 'node:crypto';
import { clone, deepEqual, isObject, type JsonObject } from './json.js';
import { jsonPatch, mergePatch, PatchError, strategicMergePatch, OBJECT_META_SCHEMA } from './patch.js';
import type { KubeObject, ObjectMeta, Resource } from './registry.js';
import { matchFields, matchLabels, parseFieldSelector, parseLabelSelector } from './selectors.js';
import type { ObjectStore } from './store.js';
import { alreadyExists, ApiError, badRequest, conflict, invalid, notFound } from './status.js';

/** The patch content types the server understands. */
export type PatchType = 'json' | 'merge' | 'strategic';

/** Which part of an object a write may change: the main resource, its status subresource, or all of it (test helpers). */
export type WriteScope = 'main' | 'status' | 'all';

/** Options shared by the write operations. */
export interface WriteOptions {
  namespace?: string;
  dryRun?: boolean;
  scope?: WriteScope;
}

/** Options of `list`. */
export interface ListOptions {
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** An RFC 3339 timestamp with second precision, as metadata timestamps are written. */
export function timestamp(d = new Date()): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function randomSuffix(): string {
  const alphabet = 'bcdfghjklmnpqrstvwxz2456789';
  let s = '';
  for (let i = 0; i < 5; i++) s += alphabet[Math.floor(Math.random() * alphabet.length)];
  return s;
}

/** Create, read, update, patch and delete of one resource type with kube-apiserver semantics. */
export class ResourceHandle {
  constructor(
    readonly resource: Resource,
    private readonly store: ObjectStore,
  ) {}

  private key(name: string, namespace?: string): string {
    return this.resource.namespaced ? `${namespace ?? ''}/${name}` : name;
  }

  private notFound(name: string): ApiError {
    return notFound(this.resource.plural, this.resource.group, name);
  }

  private validateMeta(obj: KubeObject, name: string): void {
    const r = this.resource;
    const meta = obj.metadata;
    if (!DNS_SUBDOMAIN.test(name) || name.length > 253) {
      throw invalid(
        r.kind,
        r.group,
        name,
        'metadata.name',
        `Invalid value: "${name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, ` +
          `'-' or '.', and must start and end with an alphanumeric character`,
      );
    }
    for (const field of ['labels', 'annotations'] as const) {
      const m = meta?.[field];
      if (m === undefined || m === null) continue;
      if (!isObject(m) || Object.values(m).some((v) => typeof v !== 'string')) {
        throw badRequest(`json: cannot unmarshal into Go struct field ObjectMeta.metadata.${field} of type string`);
      }
    }
    if (
      meta?.finalizers !== undefined &&
      (!Array.isArray(meta.finalizers) || meta.finalizers.some((f) => typeof f !== 'string'))
    ) {
      throw badRequest('json: cannot unmarshal into Go struct field ObjectMeta.metadata.finalizers of type string');
    }
  }

  private checkTypeMeta(obj: KubeObject): void {
    const r = this.resource;
    if (obj.apiVersion !== undefined && obj.apiVersion !== r.apiVersion) {
      throw badRequest(
        `the API version in the data (${String(obj.apiVersion)}) does not match the expected API version (${r.apiVersion})`,
      );
    }
    if (obj.kind !== undefined && obj.kind !== r.kind) {
      throw badRequest(`the kind in the data (${String(obj.kind)}) does not match the expected kind (${r.kind})`);
    }
  }

  /** The object, or undefined when it does not exist. */
  get(name: string, namespace?: string): KubeObject | undefined {
    return this.store.get(this.resource.key, this.key(name, namespace));
  }

  /** The object, or a 404 NotFound ApiError. */
  mustGet(name: string, namespace?: string): KubeObject {
    const o = this.get(name, namespace);
    if (!o) throw this.notFound(name);
    return o;
  }

  /** Current objects matching the namespace and selectors, sorted by namespace/name. */
  list(opts: ListOptions = {}): KubeObject[] {
    return this.filter(this.store.list(this.resource.key), opts);
  }

  /** Objects of `objs` that match the namespace and selectors. */
  filter(objs: KubeObject[], opts: ListOptions = {}): KubeObject[] {
    const matcher = this.matcher(opts);
    return objs.filter(matcher);
  }

  /** A predicate for namespace plus label and field selectors (throws 400 on bad selectors). */
  matcher(opts: ListOptions): (o: KubeObject) => boolean {
    const labels = parseLabelSelector(opts.labelSelector ?? '');
    const fields = parseFieldSelector(opts.fieldSelector ?? '', this.resource.selectableFields);
    const ns = opts.namespace;
    return (o) =>
      (ns === undefined || ns === '' || o.metadata?.namespace === ns) &&
      matchLabels(labels, o.metadata?.labels) &&
      matchFields(fields, o);
  }

  /** Creates an object (POST semantics); returns it as stored. */
  create(input: KubeObject, opts: WriteOptions = {}): KubeObject {
    const r = this.resource;
    if (!isObject(input)) throw badRequest('the body of the request was not a JSON object');
    this.checkTypeMeta(input);
    const obj = clone(input);
    const meta: ObjectMeta = isObject(obj.metadata) ? obj.metadata : {};
    obj.metadata = meta;
    obj.apiVersion = r.apiVersion;
    obj.kind = r.kind;
    if (r.namespaced) {
      if (opts.namespace && meta.namespace && meta.namespace !== opts.namespace) {
        throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
      }
      meta.namespace = meta.namespace || opts.namespace || 'default';
    } else {
      delete meta.namespace;
    }
    if (!meta.name && meta.generateName) meta.name = meta.generateName + randomSuffix();
    const name = meta.name;
    if (!name) throw invalid(r.kind, r.group, '', 'metadata.name', 'Required value: name or generateName is required');
    this.validateMeta(obj, name);
    r.validate?.(obj);
    if (meta.resourceVersion) throw new ApiError(500, '', 'resourceVersion should not be set on objects to be created');
    const key = this.key(name, meta.namespace);
    if (this.store.get(r.key, key)) throw alreadyExists(r.plural, r.group, name);
    meta.uid = randomUUID();
    meta.creationTimestamp = timestamp();
    delete meta.deletionTimestamp;
    if (r.builtin) delete meta.generation;
    else meta.generation = 1;
    if (opts.dryRun) return obj;
    return this.store.commit(r.key, key, 'ADDED', obj).object;
  }

  /** Replaces an object (PUT semantics; 409 on a stale metadata.resourceVersion); returns it as stored. */
  update(input: KubeObject, opts: WriteOptions & { name?: string } = {}): KubeObject {
    if (!isObject(input)) throw badRequest('the body of the request was not a JSON object');
    this.checkTypeMeta(input);
    const name = opts.name ?? input.metadata?.name;
    if (!name) throw badRequest('name is required');
    if (input.metadata?.name !== undefined && input.metadata.name !== name) {
      throw badRequest(
        'the name of the object (' +
          String(input.metadata.name) +
          ') does not match the name on the URL (' +
          name +
          ')',
      );
    }
    const ns = this.resource.namespaced ? (opts.namespace ?? input.metadata?.namespace) : undefined;
    const old = this.mustGet(name, ns);
    return this.write(old, clone(input), opts, true);
  }

  /** Applies a patch (PATCH semantics); returns the object as stored. */
  patch(name: string, type: PatchType, patch: unknown, opts: WriteOptions = {}): KubeObject {
    const r = this.resource;
    const old = this.mustGet(name, opts.namespace);
    let patched: unknown;
    try {
      if (type === 'merge') patched = mergePatch(old, patch);
      else if (type === 'json') patched = jsonPatch(old, patch);
      else {
        if (!r.strategic) {
          throw new ApiError(
            415,
            'UnsupportedMediaType',
            'the body of the request was in an unknown format - accepted media types include: ' +
              'application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml',
          );
        }
        patched = strategicMergePatch(old, patch, { ...OBJECT_META_SCHEMA, ...r.strategic });
      }
    } catch (err) {
      if (err instanceof PatchError) {
        if (err.kind === 'decode') throw badRequest(err.message);
        throw new ApiError(422, 'Invalid', err.message);
      }
      throw err;
    }
    if (!isObject(patched)) throw new ApiError(422, 'Invalid', 'the patched document is not an object');
    const candidate = patched as KubeObject;
    if (candidate.metadata?.name !== name) {
      throw invalid(
        r.kind,
        r.group,
        name,
        'metadata.name',
        'Invalid value: the name of an object cannot be changed by a patch',
      );
    }
    return this.write(old, candidate, opts, false);
  }

  /** Writes `candidate` over `old` (a PUT when `isPut`, else a patch result): resourceVersion checks, scope, generation, no-op detection. */
  private write(old: KubeObject, candidate: KubeObject, opts: WriteOptions, isPut: boolean): KubeObject {
    const r = this.resource;
    this.checkTypeMeta(candidate);
    const oldMeta = old.metadata ?? {};
    const name = oldMeta.name as string;
    this.checkResourceVersion(old, candidate, isPut);
    const next = this.nextObject(old, candidate, opts.scope ?? 'all');
    next.apiVersion = r.apiVersion;
    next.kind = r.kind;
    const nextMeta = next.metadata as ObjectMeta;
    nextMeta.resourceVersion = oldMeta.resourceVersion as string;
    if (deepEqual(next, old)) return old;
    if (!r.builtin && !deepEqual(specOf(next), specOf(old)))
      nextMeta.generation = (Number(oldMeta.generation) || 0) + 1;
    if (opts.dryRun) return next;
    const key = this.key(name, oldMeta.namespace);
    if (nextMeta.deletionTimestamp && !nextMeta.finalizers?.length) {
      return this.store.commit(r.key, key, 'DELETED', next).object;
    }
    return this.store.commit(r.key, key, 'MODIFIED', next).object;
  }

  /** 409 Conflict when the candidate carries a stale resourceVersion; 422 when a PUT of a custom resource carries none. */
  private checkResourceVersion(old: KubeObject, candidate: KubeObject, isPut: boolean): void {
    const r = this.resource;
    const name = old.metadata?.name as string;
    const candMeta: ObjectMeta = isObject(candidate.metadata) ? candidate.metadata : {};
    const wantRv = candMeta.resourceVersion;
    if (wantRv !== undefined && wantRv !== '' && wantRv !== old.metadata?.resourceVersion)
      throw conflict(r.plural, r.group, name);
    if (isPut && !wantRv && !r.builtin) {
      throw invalid(
        r.kind,
        r.group,
        name,
        'metadata.resourceVersion',
        'Invalid value: 0x0: must be specified for an update',
      );
    }
  }

  /**
   * What a write in `scope` makes of `old`: for the status subresource, `old` with the candidate's status;
   * otherwise the candidate with the old system metadata (and the old status, on the main resource of a
   * type with a status subresource), validated.
   */
  private nextObject(old: KubeObject, candidate: KubeObject, scope: WriteScope): KubeObject {
    const r = this.resource;
    if (scope === 'status') {
      const next = clone(old);
      if (candidate.status === undefined) delete next.status;
      else next.status = clone(candidate.status);
      return next;
    }
    const next = clone(candidate);
    if (scope === 'main' && r.statusSubresource) {
      if (old.status === undefined) delete next.status;
      else next.status = clone(old.status);
    }
    keepSystemMetadata(next, old.metadata ?? {}, r.namespaced);
    this.validateMeta(next, old.metadata?.name as string);
    r.validate?.(next);
    return next;
  }

  /** 409 Conflict when a delete precondition on `field` (`UID`, `ResourceVersion`) is set to other than the object's value. */
  private checkPrecondition(name: string, field: string, want: string | undefined, have: string | undefined): void {
    if (!want || want === have) return;
    const r = this.resource;
    const why = `Precondition failed: ${field} in precondition: ${want}, ${field} in object meta: ${have ?? ''}`;
    throw conflict(r.plural, r.group, name, why);
  }

  /** Deletes an object (or marks it with deletionTimestamp while finalizers remain); returns its last state. */
  delete(
    name: string,
    opts: WriteOptions & { preconditions?: { uid?: string; resourceVersion?: string } } = {},
  ): KubeObject {
    const r = this.resource;
    const old = this.mustGet(name, opts.namespace);
    const meta = old.metadata ?? {};
    this.checkPrecondition(name, 'UID', opts.preconditions?.uid, meta.uid);
    this.checkPrecondition(name, 'ResourceVersion', opts.preconditions?.resourceVersion, meta.resourceVersion);
    if (opts.dryRun) return old;
    const key = this.key(name, meta.namespace);
    if (meta.finalizers?.length) {
      if (meta.deletionTimestamp) return old;
      const marked = clone(old);
      (marked.metadata as ObjectMeta).deletionTimestamp = timestamp();
      (marked.metadata as ObjectMeta).deletionGracePeriodSeconds = 0;
      return this.store.commit(r.key, key, 'MODIFIED', marked).object;
    }
    return this.store.commit(r.key, key, 'DELETED', old).object;
  }
}

/** Gives `next` the metadata that only the server sets, as `old` has it: name, namespace, uid, timestamps, generation. */
function keepSystemMetadata(next: KubeObject, oldMeta: ObjectMeta, namespaced: boolean): void {
  const meta: ObjectMeta = isObject(next.metadata) ? next.metadata : {};
  next.metadata = meta;
  meta.name = oldMeta.name as string;
  if (namespaced) meta.namespace = oldMeta.namespace as string;
  else delete meta.namespace;
  meta.uid = oldMeta.uid as string;
  meta.creationTimestamp = oldMeta.creationTimestamp as string;
  if (oldMeta.deletionTimestamp) meta.deletionTimestamp = oldMeta.deletionTimestamp;
  else delete meta.deletionTimestamp;
  if (oldMeta.generation !== undefined) meta.generation = oldMeta.generation;
  else delete meta.generation;
}

function specOf(o: KubeObject): JsonObject {
  const rest: JsonObject = { ...o };
  delete rest.metadata;
  delete rest.status;
  delete rest.apiVersion;
  delete rest.kind;
  return rest;
}
