/*
 * Authentication: the user a request is, from its bearer token. Without `token` and `users`
 * every request is the admin (a known token still names its user); with them, a request needs a
 * token the server knows, except the public paths, which answer anonymous requests.
 */
import type * as http from 'node:http';
import { ADMIN_USER, ANONYMOUS_USER, type UserInfo } from '../auth.js';
import type { ServerState } from '../state.js';
import { ApiError } from '../status.js';

/** Paths that answer requests without credentials, as kube-apiserver's default RBAC lets them. */
const PUBLIC_PATHS = new Set(['/version', '/healthz', '/livez', '/readyz']);

/** The user a request authenticates as (401 Unauthorized when it cannot). */
export function authenticate(state: ServerState, req: http.IncomingMessage, path: string): UserInfo {
  const h = req.headers.authorization;
  const m = h ? /^Bearer (\S+)$/.exec(h) : null;
  const user = m ? state.tokens.lookup(m[1] as string, (b) => state.boundObjectExists(b)) : undefined;
  if (user) return user;
  if (!state.authRequired) return ADMIN_USER;
  if (!h && PUBLIC_PATHS.has(path)) return ANONYMOUS_USER;
  throw new ApiError(401, 'Unauthorized', 'Unauthorized');
}
