/*
 * Who a request is, for the test API server: bearer tokens mapped to users (name, uid, groups and
 * extra, as kube-apiserver's authenticators report them), and service-account tokens minted the
 * way the TokenRequest API mints them (JWT-shaped, expiring, optionally bound to an object whose
 * deletion ends the token, with the claims and `extra` keys of a real cluster), and revocation.
 */
import { randomBytes, randomUUID } from 'node:crypto';

/** A user as authenticators report it (authentication.k8s.io/v1 UserInfo). */
export interface UserInfo {
  username: string;
  uid?: string;
  groups?: string[];
  /** Extra attributes, e.g. `authentication.kubernetes.io/node-name` of a Node-bound token. */
  extra?: Record<string, string[]>;
}

/** The user behind the server's `token` option, and behind every request when authentication is off: a cluster admin. */
export const ADMIN_USER: UserInfo = {
  username: 'kube-api-test:admin',
  groups: ['system:masters', 'system:authenticated'],
};

/** The user of requests without credentials to the public paths (/version, /healthz, ...). */
export const ANONYMOUS_USER: UserInfo = { username: 'system:anonymous', groups: ['system:unauthenticated'] };

/** `extra` key naming the Node a service-account token is bound to (or the node of the pod it is bound to). */
export const EXTRA_NODE_NAME = 'authentication.kubernetes.io/node-name';
/** `extra` key with the uid of that Node. */
export const EXTRA_NODE_UID = 'authentication.kubernetes.io/node-uid';
/** `extra` key naming the pod a service-account token is bound to. */
export const EXTRA_POD_NAME = 'authentication.kubernetes.io/pod-name';
/** `extra` key with the uid of that pod. */
export const EXTRA_POD_UID = 'authentication.kubernetes.io/pod-uid';
/** `extra` key identifying one credential (`JTI=<token id>`), as in kube-apiserver's audit log. */
export const EXTRA_CREDENTIAL_ID = 'authentication.kubernetes.io/credential-id';

/** The object a token is bound to: the token stops authenticating once that object is gone or replaced (other uid). */
export interface TokenBinding {
  kind: 'Node' | 'Pod' | 'Secret';
  name: string;
  uid: string;
  namespace?: string;
}

/** What `mintServiceAccountToken` needs. */
export interface ServiceAccountTokenSpec {
  namespace: string;
  /** The ServiceAccount's name. */
  name: string;
  /** The ServiceAccount's uid (default: a fresh one). */
  serviceAccountUid?: string;
  /** Lifetime (default 3600 s). */
  expirationSeconds?: number;
  /** Audiences (default: the API server's). */
  audiences?: string[];
  /** Bind the token to this object. */
  boundObject?: TokenBinding;
  /** For a Pod-bound token: the Node the pod runs on (newer clusters put it into the claims too). */
  podNode?: { name: string; uid: string };
}

/** A minted token, the user it authenticates as, and its expiry. */
export interface MintedToken {
  token: string;
  user: UserInfo;
  /** Milliseconds since the epoch. */
  expiresAt: number;
  /** The token's id (`jti` claim); the user's credential-id is `JTI=<id>`. */
  id: string;
  /** The JWT claims, as a real cluster would put them into the token. */
  claims: Record<string, unknown>;
}

const ISSUER = 'https://kubernetes.default.svc.cluster.local';

function b64url(obj: unknown): string {
  return Buffer.from(JSON.stringify(obj)).toString('base64url');
}

/**
 * Makes a service-account token like TokenRequest does: a JWT (unsigned here: the server knows
 * its tokens by value) with the `kubernetes.io` claims, and the user it authenticates as:
 * `system:serviceaccount:<ns>:<name>`, the service-account groups, and the extra keys of the
 * bound object (node-name/node-uid for a Node, pod-name/pod-uid and the pod's node for a Pod).
 */
export function mintServiceAccountToken(spec: ServiceAccountTokenSpec, now = Date.now()): MintedToken {
  const iat = Math.floor(now / 1000);
  const exp = iat + (spec.expirationSeconds ?? 3600);
  const id = randomUUID();
  const saUid = spec.serviceAccountUid ?? randomUUID();
  const k8sClaims: Record<string, unknown> = {
    namespace: spec.namespace,
    serviceaccount: { name: spec.name, uid: saUid },
  };
  const extra: Record<string, string[]> = { [EXTRA_CREDENTIAL_ID]: [`JTI=${id}`] };
  const b = spec.boundObject;
  if (b?.kind === 'Node') {
    k8sClaims.node = { name: b.name, uid: b.uid };
    extra[EXTRA_NODE_NAME] = [b.name];
    extra[EXTRA_NODE_UID] = [b.uid];
  } else if (b?.kind === 'Pod') {
    k8sClaims.pod = { name: b.name, uid: b.uid };
    extra[EXTRA_POD_NAME] = [b.name];
    extra[EXTRA_POD_UID] = [b.uid];
    if (spec.podNode) {
      k8sClaims.node = { ...spec.podNode };
      extra[EXTRA_NODE_NAME] = [spec.podNode.name];
      extra[EXTRA_NODE_UID] = [spec.podNode.uid];
    }
  } else if (b?.kind === 'Secret') {
    k8sClaims.secret = { name: b.name, uid: b.uid };
  }
  const claims: Record<string, unknown> = {
    aud: spec.audiences ?? [ISSUER],
    exp,
    iat,
    iss: ISSUER,
    jti: id,
    'kubernetes.io': k8sClaims,
    nbf: iat,
    sub: `system:serviceaccount:${spec.namespace}:${spec.name}`,
  };
  const token = `${b64url({ alg: 'RS256', kid: 'kube-api-test' })}.${b64url(claims)}.${randomBytes(32).toString('base64url')}`;
  const user: UserInfo = {
    username: claims.sub as string,
    uid: saUid,
    groups: ['system:serviceaccounts', `system:serviceaccounts:${spec.namespace}`, 'system:authenticated'],
    extra,
  };
  return { token, user, expiresAt: exp * 1000, id, claims };
}

interface Entry {
  user: UserInfo;
  expiresAt?: number;
  bound?: TokenBinding;
}

/** The bearer tokens a server accepts, each with its user, expiry and binding. */
export class TokenTable {
  private readonly entries = new Map<string, Entry>();

  /** Accepts `token` as `user` (until `expiresAt`, ms since the epoch; while `bound` exists). */
  add(token: string, user: UserInfo, opts: { expiresAt?: number; bound?: TokenBinding } = {}): void {
    if (token === '' || /\s/.test(token)) throw new Error('a bearer token must be non-empty and without whitespace');
    this.entries.set(token, { user, ...opts });
  }

  /** Stops accepting `token`; false if it was not accepted. */
  revoke(token: string): boolean {
    return this.entries.delete(token);
  }

  /** The user of a token that is known, not expired and whose bound object still exists (as `alive` tells); otherwise undefined. */
  lookup(token: string, alive: (b: TokenBinding) => boolean, now = Date.now()): UserInfo | undefined {
    const e = this.entries.get(token);
    if (!e) return undefined;
    if (e.expiresAt !== undefined && now >= e.expiresAt) return undefined;
    if (e.bound && !alive(e.bound)) return undefined;
    return e.user;
  }
}
