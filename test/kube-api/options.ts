/*
 * The options a test API server is made with, and their defaults.
 */
import type { UserInfo } from './auth.js';

/** Constructor options of KubeApiServer. */
export interface KubeApiServerOptions {
  /** Require `Authorization: Bearer <token>` on every request but /version and the health checks; this token is a cluster admin. */
  token?: string;
  /** More bearer tokens, each the credential of a user (name, groups, extra); also turns authentication on. */
  users?: Record<string, UserInfo>;
  /** Serve admissionregistration.k8s.io/v1 ValidatingAdmissionPolicies and their bindings, and enforce them on writes (default false). */
  admission?: boolean;
  /** Serve core/v1 ServiceAccounts and their `token` subresource (TokenRequest, e.g. `kubectl create token`) (default false). */
  serviceAccounts?: boolean;
  /** Serve HTTPS with a generated CA (default true). */
  tls?: boolean;
  /** Listen address (default 127.0.0.1); any local address, e.g. a bridge address in a network namespace. */
  host?: string;
  /** Listen port (default 0: ephemeral). */
  port?: number;
  /** How many events the history keeps before older resourceVersions expire (default 10000). */
  historyLimit?: number;
  /** Extra subjectAltNames (IPs or DNS names) for the server certificate. */
  sans?: string[];
  /** Interval of BOOKMARK events on watches that ask for them (default 60000 ms). */
  bookmarkIntervalMs?: number;
  /** Answer `Accept: ...;as=Table` with a server-side Table (default true); false sends plain JSON like an old server. */
  tables?: boolean;
}

/** The options with the defaults of those the server always needs filled in. */
export type ResolvedOptions = Required<
  Pick<KubeApiServerOptions, 'tls' | 'host' | 'port' | 'bookmarkIntervalMs' | 'tables'>
> &
  KubeApiServerOptions;

/** Fills in the defaults. */
export function resolveOptions(opts: KubeApiServerOptions): ResolvedOptions {
  return {
    tls: true,
    host: '127.0.0.1',
    port: 0,
    bookmarkIntervalMs: 60000,
    tables: true,
    ...opts,
  };
}
