/**
 * `wg-overlay kubeconfig`: writes the kubeconfig the daemon uses (default
 * /etc/wg-overlay/kubeconfig, mode 0600, atomically) from the API server URL, the cluster CA and
 * a token of wg-overlay's ServiceAccount (see /usr/share/wg-overlay/kubernetes/rbac.yaml). The CA
 * and the token are embedded, so the file works on its own inside the service's sandbox.
 */
import { X509Certificate } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { hasErrorCode, writeFileAtomic } from '../util/atomic-file.js';

/** Where the daemon looks for its kubeconfig unless the config says otherwise. */
export const DEFAULT_KUBECONFIG_PATH = '/etc/wg-overlay/kubeconfig';

/** Name of the cluster, user and context entries in the written file. */
const ENTRY = 'wg-overlay';

export const KUBECONFIG_USAGE = `Usage: wg-overlay kubeconfig --server URL --ca FILE --token-file FILE [--output FILE] [--force]

Writes the kubeconfig wg-overlay uses to reach the Kubernetes API (mode 0600).
  --server URL        the API server, e.g. https://10.0.0.1:6443 (https only)
  --ca FILE           PEM file of the CA that signed the API server's certificate
  --token-file FILE   file holding a token of wg-overlay's ServiceAccount ("-": standard input)
  --output FILE       where to write it (default ${DEFAULT_KUBECONFIG_PATH})
  --force             replace an existing file
`;

/** A problem with the arguments or inputs; the message says what to fix. */
export class KubeconfigCommandError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KubeconfigCommandError';
  }
}

/** What the kubeconfig is made of. */
export interface KubeconfigInput {
  server: string;
  caPem: string;
  token: string;
}

/** Checks the server URL: absolute https with a host, no credentials, query or fragment. */
export function checkServerUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new KubeconfigCommandError(`--server ${JSON.stringify(text)} is not a URL; expected e.g. https://10.0.0.1:6443`);
  }
  if (url.protocol !== 'https:') throw new KubeconfigCommandError(`--server ${text}: must be an https:// URL (the token must not travel in clear text)`);
  if (!url.hostname) throw new KubeconfigCommandError(`--server ${text}: no host name`);
  if (url.username || url.password || url.search || url.hash) throw new KubeconfigCommandError(`--server ${text}: must not contain credentials, a query or a fragment`);
  return text.replace(/\/+$/, '');
}

/** Checks that `pem` holds at least one X.509 certificate; returns the PEM text normalized. */
export function checkCaPem(pem: string, file: string): string {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
  if (!blocks || blocks.length === 0) throw new KubeconfigCommandError(`--ca ${file}: no PEM certificate found (expected "-----BEGIN CERTIFICATE-----")`);
  for (const b of blocks) {
    try {
      new X509Certificate(b);
    } catch {
      throw new KubeconfigCommandError(`--ca ${file}: a certificate in it cannot be parsed`);
    }
  }
  return blocks.join('\n') + '\n';
}

/** Checks a bearer token read from a file: one line, printable, no spaces. */
export function checkToken(text: string, file: string): string {
  const token = text.trim();
  if (token === '') throw new KubeconfigCommandError(`--token-file ${file}: the file is empty`);
  if (/\s/.test(token)) throw new KubeconfigCommandError(`--token-file ${file}: the token contains whitespace or several lines; put only the token in the file`);
  // eslint-disable-next-line no-control-regex
  if (/[^\x21-\x7e]/.test(token)) throw new KubeconfigCommandError(`--token-file ${file}: the token contains non-printable characters`);
  return token;
}

/** Renders the kubeconfig (YAML) for the inputs. */
export function renderKubeconfig(input: KubeconfigInput): string {
  const doc = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: ENTRY, cluster: { server: input.server, 'certificate-authority-data': Buffer.from(input.caPem).toString('base64') } }],
    users: [{ name: ENTRY, user: { token: input.token } }],
    contexts: [{ name: ENTRY, context: { cluster: ENTRY, user: ENTRY } }],
    'current-context': ENTRY,
    preferences: {},
  };
  return `# Written by \`wg-overlay kubeconfig\`: credentials of wg-overlay's ServiceAccount. Keep it mode 0600.\n${k8s.dumpYaml(doc, { lineWidth: -1 })}`;
}

async function readInput(file: string, what: string): Promise<string> {
  try {
    if (file === '-') {
      const chunks: Buffer[] = [];
      for await (const c of process.stdin) chunks.push(c as Buffer);
      return Buffer.concat(chunks).toString('utf8');
    }
    return await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new KubeconfigCommandError(`${what} ${file}: ${code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'permission denied' : `cannot be read (${code ?? String(err)})`}`);
  }
}

/** Runs `wg-overlay kubeconfig ARGS`; resolves with the exit status (2: usage, 1: error). */
export async function kubeconfigCommand(argv: string[], out: NodeJS.WritableStream = process.stdout, errOut: NodeJS.WritableStream = process.stderr): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        server: { type: 'string' },
        ca: { type: 'string' },
        'token-file': { type: 'string' },
        output: { type: 'string', short: 'o' },
        force: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: false,
    }));
  } catch (err) {
    errOut.write(`wg-overlay kubeconfig: ${(err as Error).message}\n${KUBECONFIG_USAGE}`);
    return 2;
  }
  if (values.help) {
    out.write(KUBECONFIG_USAGE);
    return 0;
  }
  const missing = (['server', 'ca', 'token-file'] as const).filter((k) => !values[k]);
  if (missing.length > 0) {
    errOut.write(`wg-overlay kubeconfig: missing ${missing.map((m) => `--${m}`).join(', ')}\n${KUBECONFIG_USAGE}`);
    return 2;
  }
  const output = values.output ?? DEFAULT_KUBECONFIG_PATH;
  try {
    const server = checkServerUrl(values.server!);
    const caPem = checkCaPem(await readInput(values.ca!, '--ca'), values.ca!);
    const token = checkToken(await readInput(values['token-file']!, '--token-file'), values['token-file']!);
    const text = renderKubeconfig({ server, caPem, token });
    // The result must load the way the daemon loads it.
    const kc = new k8s.KubeConfig();
    kc.loadFromString(text);
    if (kc.getCurrentCluster()?.server !== server) throw new Error('internal error: the rendered kubeconfig does not round-trip');
    const dir = dirname(output);
    try {
      if (!(await stat(dir)).isDirectory()) throw new KubeconfigCommandError(`--output ${output}: ${dir} is not a directory`);
    } catch (err) {
      if (err instanceof KubeconfigCommandError) throw err;
      throw new KubeconfigCommandError(`--output ${output}: the directory ${dir} does not exist`);
    }
    try {
      await writeFileAtomic(output, text, 0o600, { exclusive: !values.force });
    } catch (err) {
      if (!values.force && hasErrorCode(err, 'EEXIST')) {
        throw new KubeconfigCommandError(`--output ${output} already exists; add --force to replace it`);
      }
      if (hasErrorCode(err, 'EACCES') || hasErrorCode(err, 'EPERM') || hasErrorCode(err, 'EROFS')) {
        throw new KubeconfigCommandError(`--output ${output}: permission denied (run as root)`);
      }
      throw err;
    }
    out.write(`wrote ${output} (mode 0600): server ${server}, context ${ENTRY}\n`);
    if (output === DEFAULT_KUBECONFIG_PATH) out.write('Start or restart the service: systemctl restart wg-overlay\n');
    return 0;
  } catch (err) {
    if (err instanceof KubeconfigCommandError) {
      errOut.write(`wg-overlay kubeconfig: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}
