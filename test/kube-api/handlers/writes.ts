/*
 * Writes: create (POST), update (PUT), patch (PATCH), delete and deletecollection (DELETE), of
 * the main resource or its status subresource, honouring dry runs. When the server enforces
 * ValidatingAdmissionPolicies each write passes admission first: a dry run of the write gives
 * admission the object it would store; a denial is thrown, warnings become Warning headers.
 */
import type * as http from 'node:http';
import {
  validatingAdmission,
  VALIDATING_ADMISSION_POLICY_BINDING_RESOURCE,
  VALIDATING_ADMISSION_POLICY_RESOURCE,
  type Operation,
} from '../admission.js';
import type { ResourceRequest } from '../http/context.js';
import { listBody } from '../http/format.js';
import { parseJson, sendJson, sendObject } from '../http/respond.js';
import { isObject } from '../json.js';
import { resourceKey, type KubeObject } from '../registry.js';
import type { PatchType, WriteOptions } from '../resource.js';
import { ApiError, badRequest } from '../status.js';
import { listOptions } from './reads.js';

/** What admission is asked about a write: the operation, the object after it and before it, and its name if not the path's. */
interface Admission {
  operation: Operation;
  object: KubeObject | null;
  oldObject: KubeObject | null;
  name?: string;
}

const POLICIES = resourceKey(VALIDATING_ADMISSION_POLICY_RESOURCE);
const BINDINGS = resourceKey(VALIDATING_ADMISSION_POLICY_BINDING_RESOURCE);

const PATCH_TYPES = new Map<string, PatchType>([
  ['application/json-patch+json', 'json'],
  ['application/merge-patch+json', 'merge'],
  ['application/strategic-merge-patch+json', 'strategic'],
]);

/** POST to a collection. */
export function serveCreate(rc: ResourceRequest): void {
  const input = parseJson(rc.body) as KubeObject;
  const opts = rc.namespace ? { namespace: rc.namespace } : {};
  if (rc.state.admissionEnabled) {
    const candidate = rc.handle.create(input, { dryRun: true, ...opts });
    admit(rc, { operation: 'CREATE', object: candidate, oldObject: null, name: candidate.metadata?.name ?? '' });
  }
  sendObject(rc, 201, rc.handle.create(input, { dryRun: rc.dryRun, ...opts }));
}

/** PUT of an object or its status. */
export function serveUpdate(rc: ResourceRequest): void {
  const name = rc.name as string;
  const input = parseJson(rc.body) as KubeObject;
  const opts = { name, ...writeOptions(rc) };
  if (rc.state.admissionEnabled) {
    const object = rc.handle.update(input, { ...opts, dryRun: true });
    admit(rc, { operation: 'UPDATE', object, oldObject: rc.handle.mustGet(name, rc.namespace) });
  }
  sendObject(rc, 200, rc.handle.update(input, { ...opts, dryRun: rc.dryRun }));
}

/** PATCH of an object or its status, in the patch format its Content-Type names. */
export function servePatch(rc: ResourceRequest): void {
  const name = rc.name as string;
  const type = patchType(rc.contentType);
  const patch = parseJson(rc.body);
  const opts = writeOptions(rc);
  // At admission a patch is an UPDATE of the patched object.
  if (rc.state.admissionEnabled) {
    const object = rc.handle.patch(name, type, patch, { ...opts, dryRun: true });
    admit(rc, { operation: 'UPDATE', object, oldObject: rc.handle.mustGet(name, rc.namespace) });
  }
  sendObject(rc, 200, rc.handle.patch(name, type, patch, { ...opts, dryRun: rc.dryRun }));
}

/** DELETE of an object (with DeleteOptions: dryRun, preconditions). */
export function serveDelete(rc: ResourceRequest): void {
  const name = rc.name as string;
  const { dryRun, preconditions } = deleteOptions(rc);
  if (rc.state.admissionEnabled)
    admit(rc, { operation: 'DELETE', object: null, oldObject: rc.handle.mustGet(name, rc.namespace) });
  const obj = rc.handle.delete(name, { dryRun, preconditions, ...(rc.namespace ? { namespace: rc.namespace } : {}) });
  sendObject(rc, 200, obj);
}

/** DELETE of a collection: every object the selectors match, each passing admission; answered with the list of them. */
export function serveDeleteCollection(rc: ResourceRequest): void {
  const { dryRun } = deleteOptions(rc);
  const victims = rc.handle.list(listOptions(rc.query, rc.namespace));
  if (rc.state.admissionEnabled) {
    for (const v of victims)
      admit(rc, { operation: 'DELETE', object: null, oldObject: v, name: v.metadata?.name ?? '' });
  }
  const deleted = victims.map((v) =>
    rc.handle.delete(v.metadata?.name as string, {
      dryRun,
      ...(v.metadata?.namespace ? { namespace: v.metadata.namespace } : {}),
    }),
  );
  const page = { items: deleted, resourceVersion: String(rc.state.store.rv), meta: {} };
  sendJson(rc.res, 200, listBody(rc.resource, page));
}

/** The namespace of a write and the part of the object it may change (the main resource, or the status subresource). */
function writeOptions(rc: ResourceRequest): WriteOptions {
  return { scope: rc.subresource ? 'status' : 'main', ...(rc.namespace ? { namespace: rc.namespace } : {}) };
}

/** The patch format of a media type (415 for server-side apply and anything unknown). */
function patchType(contentType: string): PatchType {
  const type = PATCH_TYPES.get(contentType);
  if (type) return type;
  if (contentType === 'application/apply-patch+yaml' || contentType === 'application/apply-patch+cbor') {
    throw new ApiError(
      415,
      'UnsupportedMediaType',
      'server-side apply is not supported by this test API server; use a merge or JSON patch',
    );
  }
  throw new ApiError(
    415,
    'UnsupportedMediaType',
    'the body of the request was in an unknown format - accepted media types include: ' +
      'application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json',
  );
}

/** The DeleteOptions of a DELETE body (400 unless a JSON object): whether it is a dry run, and its preconditions. */
function deleteOptions(rc: ResourceRequest): {
  dryRun: boolean;
  preconditions: { uid?: string; resourceVersion?: string };
} {
  const opts = rc.body.length ? parseJson(rc.body) : {};
  if (!isObject(opts)) throw badRequest('DeleteOptions must be a JSON object');
  const dryRun = rc.dryRun || (Array.isArray(opts.dryRun) && opts.dryRun.includes('All'));
  const pre = isObject(opts.preconditions) ? opts.preconditions : {};
  const preconditions: { uid?: string; resourceVersion?: string } = {};
  if (typeof pre.uid === 'string') preconditions.uid = pre.uid;
  if (typeof pre.resourceVersion === 'string') preconditions.resourceVersion = pre.resourceVersion;
  return { dryRun, preconditions };
}

/** Runs validating admission for a write: throws the denial, adds a Warning header for each Warn binding's. */
function admit(rc: ResourceRequest, a: Admission): void {
  const store = rc.state.store;
  const bindings = store.list(BINDINGS);
  if (bindings.length === 0) return;
  const r = rc.resource;
  const result = validatingAdmission(store.list(POLICIES), bindings, {
    operation: a.operation,
    group: r.group,
    version: r.version,
    resource: r.plural,
    ...(rc.subresource ? { subResource: rc.subresource } : {}),
    kind: r.kind,
    name: a.name ?? rc.name ?? '',
    ...(rc.namespace ? { namespace: rc.namespace } : {}),
    object: a.object,
    oldObject: a.oldObject,
    userInfo: rc.user,
    dryRun: rc.dryRun,
  });
  if (result.denial) throw result.denial;
  if (result.warnings.length) addWarnings(rc.res, result.warnings);
}

function addWarnings(res: http.ServerResponse, warnings: string[]): void {
  const prev = res.getHeader('Warning');
  const list = Array.isArray(prev) ? prev : prev !== undefined ? [String(prev)] : [];
  res.setHeader('Warning', [...list, ...warnings.map((w) => `299 - ${JSON.stringify(w)}`)]);
}
