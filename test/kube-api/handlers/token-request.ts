/*
 * The TokenRequest API: `POST …/namespaces/NS/serviceaccounts/NAME/token` (JSON, or the protobuf
 * that `kubectl create token` sends) mints a token of an existing ServiceAccount the way
 * kube-apiserver does, unbound or bound to a Node, and answers in JSON; and the direct helper
 * that mints one for a test without the wire (bound to a Node or to a Pod). The server accepts the tokens it mints.
 */
import { randomUUID } from 'node:crypto';
import { mintServiceAccountToken, type MintedToken, type ServiceAccountTokenSpec, type TokenBinding } from '../auth.js';
import type { RequestContext, ResourcePath } from '../http/context.js';
import { errorMessage, parseJson, sendJson } from '../http/respond.js';
import { isObject, type JsonObject } from '../json.js';
import { decodeTokenRequest, PROTOBUF_MEDIA_TYPE } from '../protobuf.js';
import { resourceKey, SERVICE_ACCOUNT_RESOURCE } from '../registry.js';
import { timestamp } from '../resource.js';
import type { ServerState } from '../state.js';
import { ApiError, badRequest, methodNotAllowed } from '../status.js';

/** Options of `createServiceAccountToken`. */
export interface ServiceAccountTokenOptions {
  namespace: string;
  name: string;
  /** Bind the token to this Node (it must exist). */
  boundNode?: string;
  /**
   * Bind the token to a Pod instead (no Pods are served: it need not exist), with the Node it runs
   * on (which must exist), whose name and uid recent clusters put into such a token too.
   */
  boundPod?: { name: string; node?: string };
  expirationSeconds?: number;
  audiences?: string[];
}

const SERVICE_ACCOUNTS = resourceKey(SERVICE_ACCOUNT_RESOURCE);

/** Whether a path is a ServiceAccount's `token` subresource. */
export function isTokenRequest(p: ResourcePath): boolean {
  return p.resource.key === SERVICE_ACCOUNTS && p.subresource === 'token' && p.name !== undefined && !p.watchPath;
}

/** POST serviceaccounts/<name>/token: answers 201 with the TokenRequest and its token (empty on a dry run). */
export function serveTokenRequest(rc: RequestContext & ResourcePath): void {
  if (rc.method !== 'POST') throw methodNotAllowed();
  const name = rc.name as string;
  const namespace = rc.namespace ?? '';
  const body = decodeBody(rc);
  const sa = rc.handle.mustGet(name, namespace);
  const spec = isObject(body) && isObject(body.spec) ? body.spec : {};
  const seconds = expirationSeconds(name, spec);
  const ref = isObject(spec.boundObjectRef) ? spec.boundObjectRef : undefined;
  const bound = ref ? bindToNode(rc.state, ref) : undefined;
  const audiences = Array.isArray(spec.audiences) && spec.audiences.length ? spec.audiences.map(String) : undefined;
  const minted = mint(
    rc.state,
    {
      namespace,
      name,
      serviceAccountUid: sa.metadata?.uid ?? '',
      expirationSeconds: seconds,
      audiences,
      boundObject: bound,
    },
    rc.dryRun,
  );
  sendJson(rc.res, 201, {
    kind: 'TokenRequest',
    apiVersion: 'authentication.k8s.io/v1',
    metadata: { name, namespace, creationTimestamp: null },
    spec: {
      audiences: minted.claims.aud,
      expirationSeconds: seconds,
      boundObjectRef: bound ? { kind: 'Node', apiVersion: 'v1', name: bound.name, uid: bound.uid } : null,
    },
    status: { token: rc.dryRun ? '' : minted.token, expirationTimestamp: timestamp(new Date(minted.expiresAt)) },
  });
}

/** The uid of an existing Node, for a binding; throws naming what the token was to be bound to. */
function nodeUid(state: ServerState, name: string, what: string): string {
  const node = state.nodes.get(name);
  if (!node) throw new Error(`cannot bind a token to ${what}: no such Node ${name}`);
  return node.metadata?.uid ?? '';
}

/**
 * Mints a token of ServiceAccount `namespace/name` the way TokenRequest does and accepts it, bound to
 * `boundNode` or `boundPod` if given; any lifetime, and the ServiceAccount need not exist.
 */
export function createServiceAccountToken(state: ServerState, opts: ServiceAccountTokenOptions): MintedToken {
  let bound: TokenBinding | undefined;
  let podNode: { name: string; uid: string } | undefined;
  if (opts.boundNode !== undefined)
    bound = { kind: 'Node', name: opts.boundNode, uid: nodeUid(state, opts.boundNode, `Node ${opts.boundNode}`) };
  else if (opts.boundPod !== undefined) {
    const { name, node } = opts.boundPod;
    bound = { kind: 'Pod', name, uid: randomUUID(), namespace: opts.namespace };
    if (node !== undefined) podNode = { name: node, uid: nodeUid(state, node, `pod ${name}`) };
  }
  const sa = state.served(SERVICE_ACCOUNT_RESOURCE)?.get(opts.name, opts.namespace);
  return mint(state, {
    namespace: opts.namespace,
    name: opts.name,
    ...(sa?.metadata?.uid ? { serviceAccountUid: sa.metadata.uid } : {}),
    expirationSeconds: opts.expirationSeconds,
    audiences: opts.audiences,
    boundObject: bound,
    ...(podNode ? { podNode } : {}),
  });
}

/** Mints a token and, unless it is a dry run, accepts it until it expires or its bound object goes. */
function mint(state: ServerState, spec: ServiceAccountTokenSpec, dryRun = false): MintedToken {
  const minted = mintServiceAccountToken(spec);
  if (!dryRun) state.tokens.add(minted.token, minted.user, { expiresAt: minted.expiresAt, bound: spec.boundObject });
  return minted;
}

/** The TokenRequest of a body: JSON, or protobuf when its Content-Type says so (400 when it does not decode). */
function decodeBody(rc: RequestContext): unknown {
  if (rc.contentType !== PROTOBUF_MEDIA_TYPE) return parseJson(rc.body);
  try {
    return decodeTokenRequest(rc.body);
  } catch (err) {
    throw badRequest(`error decoding request body as protobuf: ${errorMessage(err)}`);
  }
}

/** The lifetime a TokenRequest asks for (default an hour; 422 below 10 minutes or above 2^32 seconds). */
function expirationSeconds(name: string, spec: JsonObject): number {
  const asked = spec.expirationSeconds;
  const seconds = asked === undefined || asked === null ? 3600 : Number(asked);
  const field = 'spec.expirationSeconds';
  if (!Number.isInteger(seconds) || seconds < 600)
    throw invalid(name, field, `Invalid value: ${String(asked)}: may not specify a duration less than 10 minutes`);
  if (seconds > 2 ** 32)
    throw invalid(name, field, `Invalid value: ${seconds}: may not specify a duration larger than 2^32 seconds`);
  return seconds;
}

/** The Node a TokenRequest's boundObjectRef names (400 for other kinds, 404 if it does not exist, 409 if its uid is not the one asked for). */
function bindToNode(state: ServerState, ref: JsonObject): TokenBinding {
  if (ref.kind !== 'Node')
    throw badRequest(`cannot bind token to a ${String(ref.kind)}: this test API server binds tokens to Nodes only`);
  const node = state.nodes.mustGet(String(ref.name ?? ''));
  const uid = node.metadata?.uid ?? '';
  if (ref.uid && ref.uid !== uid) throw conflictUid(String(ref.name), String(ref.uid));
  return { kind: 'Node', name: String(ref.name), uid };
}

/** 422 for a TokenRequest with an invalid field. */
function invalid(name: string, field: string, detail: string): ApiError {
  return new ApiError(422, 'Invalid', `TokenRequest.authentication.k8s.io "${name}" is invalid: ${field}: ${detail}`, {
    name,
    group: 'authentication.k8s.io',
    kind: 'TokenRequest',
    causes: [{ reason: 'FieldValueInvalid', message: detail, field }],
  });
}

/** 409 for a TokenRequest whose bound object's uid is not the object's. */
function conflictUid(name: string, want: string): ApiError {
  return new ApiError(
    409,
    'Conflict',
    `Operation cannot be fulfilled on nodes "${name}": the UID in the bound object reference (${want}) ` +
      'does not match the UID in record. The object might have been deleted and then recreated',
    { name, kind: 'nodes' },
  );
}
