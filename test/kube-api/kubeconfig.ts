/*
 * Kubeconfigs for a test API server: its URL, its CA (or, for plain HTTP, skipped verification)
 * and a bearer token, in the form kubectl and client-node read.
 */

/** Options of `kubeconfig`: the user and context names, and the token (default: the server's admin token). */
export interface KubeconfigOptions {
  user?: string;
  token?: string;
  context?: string;
}

/** A kubeconfig (as an object) for a server at `url` with CA `caPem`, authenticating with `opts.token`, else `defaultToken`. */
export function kubeconfigFor(
  server: { url: string; caPem?: string; defaultToken?: string },
  opts: KubeconfigOptions,
): Record<string, unknown> {
  const user = opts.user ?? 'test-user';
  const context = opts.context ?? 'kube-api-test';
  const cluster: Record<string, unknown> = { server: server.url };
  if (server.caPem) cluster['certificate-authority-data'] = Buffer.from(server.caPem).toString('base64');
  // client-node 1.x refuses http:// servers unless TLS verification is marked as skipped.
  else cluster['insecure-skip-tls-verify'] = true;
  const token = opts.token ?? server.defaultToken;
  return {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'kube-api-test', cluster }],
    users: [{ name: user, user: token ? { token } : {} }],
    contexts: [{ name: context, context: { cluster: 'kube-api-test', user } }],
    'current-context': context,
    preferences: {},
  };
}
