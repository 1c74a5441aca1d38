/**
 * The kubeconfig the daemon and the operator commands use, loaded with errors that name the file; a user's `tokenFile` is re-read for every request.
 */
import { access, readFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { readTokenFile, TokenFileAuthenticator, TokenFileError } from './token.js';
import { readText } from '../util/read-failure.js';

/** A kubeconfig that cannot be used; the message names the file and what is wrong. */
export class KubeconfigError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'KubeconfigError';
  }
}

/** The token file each loaded kubeconfig's current user reads (absent: an embedded token, or none). */
const tokenFiles = new WeakMap<k8s.KubeConfig, string>();

/** The token the kubeconfig's current user authenticates with now: its token file read afresh, or its embedded token. */
export async function currentToken(kc: k8s.KubeConfig): Promise<string | undefined> {
  const file = tokenFiles.get(kc);
  if (file) return readTokenFile(file);
  return kc.getCurrentUser()?.token || undefined;
}

/** The `tokenFile` of the kubeconfig's current user (kubectl's key, which client-node drops; relative to the kubeconfig), or undefined. */
export function currentUserTokenFile(text: string, kc: k8s.KubeConfig, path: string): string | undefined {
  const name = kc.getCurrentUser()?.name;
  let doc: { users?: Array<{ name?: unknown; user?: { tokenFile?: unknown } }> };
  try {
    doc = k8s.loadYaml(text);
  } catch {
    return undefined;
  }
  const file = (Array.isArray(doc?.users) ? doc.users : []).find((u) => u?.name === name)?.user?.tokenFile;
  if (typeof file !== 'string' || file === '') return undefined;
  return isAbsolute(file) ? file : join(dirname(path), file);
}

/** Loads and checks a kubeconfig file; a user's `tokenFile` must hold a token, and is read again for every request. */
export async function loadKubeconfig(path: string): Promise<k8s.KubeConfig> {
  try {
    await access(path, constants.R_OK);
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    // The cause is not attached: its text ("ENOENT: … access …") only repeats the message.
    throw new KubeconfigError(
      code === 'ENOENT'
        ? `kubeconfig ${path} does not exist: ` +
            'create it with `wg-overlay kubeconfig --server URL --ca CA_FILE --token-file TOKEN_FILE` (see /usr/share/doc/wg-overlay/install.md)'
        : `kubeconfig ${path} is not readable (${code ?? 'error'})`,
    );
  }
  const text = await readText(path, (cause) => {
    throw new KubeconfigError(`reading kubeconfig ${path}`, { cause });
  });
  const kc = new k8s.KubeConfig();
  try {
    kc.loadFromString(text);
  } catch (cause) {
    // The YAML parser's message goes on with a source excerpt: its first line says it all, and
    // the cause is not chained so describeError does not repeat it.
    const first = (cause instanceof Error ? cause.message : String(cause)).split('\n')[0];
    throw new KubeconfigError(`kubeconfig ${path} is malformed: ${first}`);
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster || !cluster.server)
    throw new KubeconfigError(`kubeconfig ${path} has no current cluster with a server URL`);
  const user = kc.getCurrentUser();
  if (!user) throw new KubeconfigError(`kubeconfig ${path} has no user for its current context`);
  const tokenFile = user.token ? undefined : currentUserTokenFile(text, kc, path);
  if (tokenFile) {
    try {
      await readTokenFile(tokenFile);
    } catch (err) {
      if (!(err instanceof TokenFileError)) throw err;
      throw new KubeconfigError(
        `kubeconfig ${path}: ${err.message}: ` +
          'write the token with `wg-overlay kubeconfig --token-only --token-file FILE` (see /usr/share/doc/wg-overlay/install.md)',
      );
    }
    kc.addAuthenticator(new TokenFileAuthenticator(user.name, tokenFile));
    tokenFiles.set(kc, tokenFile);
  }
  // client-node resolves relative certificate paths against the working directory; make them
  // relative to the kubeconfig like kubectl does.
  kc.makePathsAbsolute(path.replace(/\/[^/]*$/, '') || '/');
  return kc;
}

/** The current cluster's CA certificate (PEM text), from `certificate-authority-data` or its file; undefined when there is none. */
export async function clusterCa(kc: k8s.KubeConfig): Promise<string | undefined> {
  const cluster = kc.getCurrentCluster();
  if (cluster?.caData) return Buffer.from(cluster.caData, 'base64').toString('utf8');
  if (cluster?.caFile) return readFile(cluster.caFile, 'utf8').catch(() => undefined);
  return undefined;
}
