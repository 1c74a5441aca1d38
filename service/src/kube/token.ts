/**
 * The bearer token of a kubeconfig user's `tokenFile`, read afresh for every request so that a
 * token rotated on disk is used without a restart; what a token says about itself, and when its
 * expiry is worth a warning.
 */
import type * as k8s from '@kubernetes/client-node';
import { readText, whyUnreadable } from '../util/read-failure.js';

/** A token file that cannot be used; the message names the file, never the token. */
export class TokenFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TokenFileError';
  }
}

/** Checks a token as read from a file: one line, printable, no spaces; returns it trimmed (`what` names the file in errors). */
export function parseToken(text: string, what: string): string {
  const token = text.trim();
  if (token === '') throw new TokenFileError(`${what}: the file is empty`);
  if (/\s/.test(token))
    throw new TokenFileError(`${what}: the token contains whitespace or several lines; put only the token in the file`);
  if (/[^\x21-\x7e]/.test(token)) throw new TokenFileError(`${what}: the token contains non-printable characters`);
  return token;
}

/** Reads and checks the token in `path`. */
export async function readTokenFile(path: string): Promise<string> {
  const text = await readText(path, (err) => {
    throw new TokenFileError(`token file ${path} ${whyUnreadable(err)}`);
  });
  return parseToken(text, `token file ${path}`);
}

type Authenticator = Parameters<k8s.KubeConfig['addAuthenticator']>[0];

/**
 * Authenticates every request of kubeconfig user `userName` (API calls and each watch
 * (re)connection) with the token now in `path`, which client-node 1.4 itself would read once at most.
 */
export class TokenFileAuthenticator implements Authenticator {
  constructor(
    readonly userName: string,
    readonly path: string,
  ) {}

  isAuthProvider(user: k8s.User): boolean {
    return user.name === this.userName;
  }

  async applyAuthentication(_user: k8s.User, opts: Parameters<Authenticator['applyAuthentication']>[1]): Promise<void> {
    const token = await readTokenFile(this.path);
    opts.headers = { ...(opts.headers ?? {}), Authorization: `Bearer ${token}` };
  }
}

/** What a service-account token says about itself (read without verifying it: for messages only). */
export interface TokenClaims {
  /** `system:serviceaccount:<namespace>:<name>`. */
  subject?: string;
  /** The Node the token is bound to, or the Node of the pod it is bound to. */
  node?: string;
  /** The pod the token is bound to. */
  pod?: string;
  expiresAt?: Date;
}

/** The claims of a JWT-shaped token, or undefined when the token is not a readable JWT. */
export function tokenClaims(token: string): TokenClaims | undefined {
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  let payload: Record<string, unknown>;
  try {
    payload = JSON.parse(Buffer.from(parts[1] as string, 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (typeof payload !== 'object' || payload === null) return undefined;
  const k = (payload['kubernetes.io'] ?? {}) as { node?: { name?: unknown }; pod?: { name?: unknown } };
  const out: TokenClaims = {};
  if (typeof payload.sub === 'string') out.subject = payload.sub;
  if (typeof k.node?.name === 'string') out.node = k.node.name;
  if (typeof k.pod?.name === 'string') out.pod = k.pod.name;
  if (typeof payload.exp === 'number') out.expiresAt = new Date(payload.exp * 1000);
  return out;
}

/** From how long before its expiry the daemon warns about its token (14 days). */
export const TOKEN_WARN_BEFORE_MS = 14 * 24 * 3600_000;

/** What to say about a token's expiry: nothing, a warning ahead of it, or an error once it passed. */
export interface TokenExpiryNotice {
  level: 'ok' | 'warning' | 'error';
  /** The line to log (absent when ok). */
  message?: string;
}

/** How to replace this node's token, in the words of the log lines. */
const ROTATE =
  'mint a new one (kubectl -n wg-overlay create token wg-overlay --bound-object-kind Node --bound-object-name NODE ' +
  '--duration 720h) and install it with `wg-overlay kubeconfig --token-only --token-file -` (no restart needed; ' +
  'see "Rotate the token" in /usr/share/doc/wg-overlay/install.md)';

/** Says how far off `ms` is, roughly: `3 days`, `1 day`, `5 hours`, `less than an hour`. */
function roughly(ms: number): string {
  const days = Math.floor(ms / (24 * 3600_000));
  if (days >= 1) return `${days} ${days === 1 ? 'day' : 'days'}`;
  const hours = Math.floor(ms / 3600_000);
  return hours >= 1 ? `${hours} ${hours === 1 ? 'hour' : 'hours'}` : 'less than an hour';
}

/** Judges a token's expiry at `now` (pure): ok, a warning from `warnBeforeMs` before it, an error after it. */
export function tokenExpiryNotice(
  expiresAt: Date | undefined,
  now: number,
  warnBeforeMs = TOKEN_WARN_BEFORE_MS,
): TokenExpiryNotice {
  if (!expiresAt) return { level: 'ok' };
  const left = expiresAt.getTime() - now;
  const at = expiresAt.toISOString();
  if (left <= 0)
    return {
      level: 'error',
      message: `this node's Kubernetes token expired at ${at}: the API server refuses it, so the mesh no longer follows the cluster; ${ROTATE}`,
    };
  if (left > warnBeforeMs) return { level: 'ok' };
  return {
    level: 'warning',
    message: `this node's Kubernetes token expires in ${roughly(left)} (at ${at}): ${ROTATE}`,
  };
}
