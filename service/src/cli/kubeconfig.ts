/**
 * `wg-overlay kubeconfig`: writes the kubeconfig the daemon uses (default
 * /etc/wg-overlay/kubeconfig, CA embedded) and the token file it names (`token` next to it), or
 * with `--token-only` replaces just that token, which a running daemon uses from its next request.
 */
import { X509Certificate } from 'node:crypto';
import { chown, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { loadConfig } from '../config/config.js';
import { currentUserTokenFile } from '../kube/kubeconfig.js';
import { parseToken, tokenClaims, TokenFileError } from '../kube/token.js';
import { fsyncDir, hasErrorCode, writeFileAtomic } from '../util/atomic-file.js';
import { readText, whyUnreadable } from '../util/read-failure.js';

/** Where the daemon looks for its kubeconfig unless the config says otherwise. */
export const DEFAULT_KUBECONFIG_PATH = '/etc/wg-overlay/kubeconfig';

/** Name of the token file, in the kubeconfig's directory. */
export const TOKEN_FILE_NAME = 'token';

/** Name of the cluster, user and context entries in the written file. */
const ENTRY = 'wg-overlay';

/** The command's usage text. */
export const KUBECONFIG_USAGE = `Usage: wg-overlay kubeconfig --server URL (--ca FILE | --ca-data BASE64) --token-file FILE [--output FILE] [--force]
       wg-overlay kubeconfig --token-only --token-file FILE [--output FILE]

Writes the kubeconfig wg-overlay uses to reach the Kubernetes API, and the file holding this
node's token that the kubeconfig names ("${TOKEN_FILE_NAME}" next to it), both mode 0600.
  --server URL        the API server as this node reaches it, e.g. https://10.0.0.1:6443 (https only)
  --ca FILE           PEM file of the CA that signed the API server's certificate
  --ca-data BASE64    the same CA base64-encoded, as in a kubeconfig's certificate-authority-data
  --token-file FILE   file holding this node's token of wg-overlay's ServiceAccount ("-": standard input)
  --output FILE       the kubeconfig to write (default ${DEFAULT_KUBECONFIG_PATH})
  --force             replace an existing kubeconfig
  --token-only        rotation: replace only the token file that the existing kubeconfig names;
                      the running daemon uses the new token from its next request (no restart)
`;

/** A problem with the arguments or inputs; the message says what to fix. */
export class KubeconfigCommandError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KubeconfigCommandError';
  }
}

/** What the kubeconfig is made of: it names the token file instead of embedding a token. */
export interface KubeconfigInput {
  server: string;
  caPem: string;
  /** Absolute path of the file holding the token. */
  tokenFile: string;
}

/** Checks the server URL: absolute https with a host, no credentials, query or fragment. */
export function checkServerUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new KubeconfigCommandError(
      `--server ${JSON.stringify(text)} is not a URL; expected e.g. https://10.0.0.1:6443`,
    );
  }
  if (url.protocol !== 'https:')
    throw new KubeconfigCommandError(
      `--server ${text}: must be an https:// URL (the token must not travel in clear text)`,
    );
  if (!url.hostname) throw new KubeconfigCommandError(`--server ${text}: no host name`);
  if (url.username || url.password || url.search || url.hash)
    throw new KubeconfigCommandError(`--server ${text}: must not contain credentials, a query or a fragment`);
  return text.replace(/\/+$/, '');
}

/** The PEM certificates in `pem`, each checked, normalized; `what` names the input in errors. */
function pemCertificates(pem: string, what: string): string {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
  if (!blocks || blocks.length === 0)
    throw new KubeconfigCommandError(`${what}: no PEM certificate found (expected "-----BEGIN CERTIFICATE-----")`);
  for (const b of blocks) {
    try {
      new X509Certificate(b);
    } catch {
      throw new KubeconfigCommandError(`${what}: a certificate in it cannot be parsed`);
    }
  }
  return blocks.join('\n') + '\n';
}

/** Checks that `pem` (read from `file`) holds at least one X.509 certificate; returns the PEM text normalized. */
export function checkCaPem(pem: string, file: string): string {
  return pemCertificates(pem, `--ca ${file}`);
}

/** Decodes `--ca-data` (base64 of PEM, as in a kubeconfig's certificate-authority-data) and checks the certificates in it. */
export function checkCaData(data: string): string {
  const text = /^[A-Za-z0-9+/=\s]+$/.test(data) ? Buffer.from(data, 'base64').toString('utf8') : '';
  return pemCertificates(text, '--ca-data (base64 of the PEM CA, as in certificate-authority-data)');
}

/** Checks a bearer token read from a file: one line, printable, no spaces. */
export function checkToken(text: string, file: string): string {
  try {
    return parseToken(text, `--token-file ${file}`);
  } catch (err) {
    if (err instanceof TokenFileError) throw new KubeconfigCommandError(err.message);
    throw err;
  }
}

/** Renders the kubeconfig (YAML) for the inputs. */
export function renderKubeconfig(input: KubeconfigInput): string {
  const doc = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: ENTRY,
        cluster: { server: input.server, 'certificate-authority-data': Buffer.from(input.caPem).toString('base64') },
      },
    ],
    users: [{ name: ENTRY, user: { tokenFile: input.tokenFile } }],
    contexts: [{ name: ENTRY, context: { cluster: ENTRY, user: ENTRY } }],
    'current-context': ENTRY,
    preferences: {},
  };
  const header = [
    "# Written by `wg-overlay kubeconfig`: how this node's wg-overlay reaches the Kubernetes API.",
    '# The token is in the tokenFile (mode 0600), read again for every request: rotate it with',
    '# `wg-overlay kubeconfig --token-only --token-file FILE`, no restart needed.',
  ];
  return `${header.join('\n')}\n${k8s.dumpYaml(doc, { lineWidth: -1 })}`;
}

/** What the token says about itself, for the command's output, and warnings; refuses an expired token. */
export function describeToken(
  token: string,
  file: string,
  nodeName?: string,
  now = Date.now(),
): { text: string; warnings: string[] } {
  const c = tokenClaims(token);
  if (!c) return { text: 'not a JWT (a static token: it names no Node)', warnings: [] };
  if (c.expiresAt && c.expiresAt.getTime() <= now) {
    throw new KubeconfigCommandError(
      `--token-file ${file}: the token expired at ${c.expiresAt.toISOString()}; mint a new one`,
    );
  }
  const parts = [c.subject ?? 'no subject'];
  const warnings: string[] = [];
  if (c.pod) {
    parts.push(c.node ? `bound to pod ${c.pod} on Node ${c.node}` : `bound to pod ${c.pod}`);
    warnings.push(
      'the token is bound to a Pod, not to a Node: node-policy.yaml refuses it (whoever may create a Pod in the ' +
        'namespace wg-overlay could get such a token for any node); mint it with --bound-object-kind Node',
    );
  } else if (c.node) parts.push(`bound to Node ${c.node}`);
  else {
    parts.push('bound to no Node');
    warnings.push(
      'the token names no Node: where node-policy.yaml is applied, this node cannot publish its annotations (mint it with --bound-object-kind Node)',
    );
  }
  if (c.node && !c.pod && nodeName && c.node !== nodeName) {
    warnings.push(
      `the token is bound to Node ${c.node}, but this node's wg-overlay is Node ${nodeName} ([kubernetes] node_name): ` +
        'where node-policy.yaml is applied, it cannot publish its annotations',
    );
  }
  if (c.expiresAt) parts.push(`expires ${c.expiresAt.toISOString()}`);
  return { text: parts.join(', '), warnings };
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
    throw new KubeconfigCommandError(`${what} ${file}: ${whyUnreadable(err)}`);
  }
}

/** Turns a failed write into a message for the admin; rethrows what it does not know. */
function writeFailure(err: unknown, path: string, what: string): never {
  if (hasErrorCode(err, 'EACCES') || hasErrorCode(err, 'EPERM') || hasErrorCode(err, 'EROFS')) {
    throw new KubeconfigCommandError(`${what} ${path}: permission denied (run as root)`);
  }
  throw err;
}

/**
 * Replaces the token file atomically, keeping an existing file's owner, group and mode (at most
 * 0640) so a daemon running as another user can still read it.
 */
export async function writeTokenFile(path: string, token: string): Promise<void> {
  let mode = 0o600;
  let owner: { uid: number; gid: number } | undefined;
  try {
    const st = await stat(path);
    mode = st.mode & 0o640;
    owner = { uid: st.uid, gid: st.gid };
  } catch (err) {
    if (!hasErrorCode(err, 'ENOENT')) throw err;
  }
  const tmp = join(dirname(path), `.${basename(path)}.new-${process.pid}`);
  try {
    await writeFileAtomic(tmp, `${token}\n`, mode);
    if (owner) await chown(tmp, owner.uid, owner.gid);
    await rename(tmp, path);
    await fsyncDir(dirname(path));
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    writeFailure(err, path, 'token file');
  }
}

async function checkDirectory(output: string): Promise<void> {
  const dir = dirname(output);
  try {
    if (!(await stat(dir)).isDirectory())
      throw new KubeconfigCommandError(`--output ${output}: ${dir} is not a directory`);
  } catch (err) {
    if (err instanceof KubeconfigCommandError) throw err;
    throw new KubeconfigCommandError(`--output ${output}: the directory ${dir} does not exist`);
  }
}

/** The node name of the wg-overlay whose config uses this kubeconfig (the default config), if that can be told. */
async function configuredNodeName(output: string): Promise<string | undefined> {
  try {
    const { config } = await loadConfig();
    return resolve(config.kubernetes.kubeconfig) === resolve(output) ? config.kubernetes.nodeName : undefined;
  } catch {
    return undefined;
  }
}

type Values = {
  server?: string;
  ca?: string;
  'ca-data'?: string;
  'token-file'?: string;
  output?: string;
  force?: boolean;
  'token-only'?: boolean;
};

/** First setup: validates everything, then writes the token file and the kubeconfig naming it. */
async function writeAll(values: Values, out: NodeJS.WritableStream): Promise<void> {
  const output = values.output ?? DEFAULT_KUBECONFIG_PATH;
  const server = checkServerUrl(values.server!);
  const caPem =
    values.ca !== undefined
      ? checkCaPem(await readInput(values.ca, '--ca'), values.ca)
      : checkCaData(values['ca-data']!);
  const token = checkToken(await readInput(values['token-file']!, '--token-file'), values['token-file']!);
  const about = describeToken(token, values['token-file']!, await configuredNodeName(output));
  const tokenFile = resolve(dirname(output), TOKEN_FILE_NAME);
  const text = renderKubeconfig({ server, caPem, tokenFile });
  // The result must load the way the daemon loads it.
  const kc = new k8s.KubeConfig();
  kc.loadFromString(text);
  if (kc.getCurrentCluster()?.server !== server || currentUserTokenFile(text, kc, output) !== tokenFile) {
    throw new Error('internal error: the rendered kubeconfig does not round-trip');
  }
  await checkDirectory(output);
  if (
    !values.force &&
    (await stat(output).then(
      () => true,
      () => false,
    ))
  ) {
    throw new KubeconfigCommandError(
      `--output ${output} already exists; add --force to replace it (or --token-only to replace only the token)`,
    );
  }
  await writeTokenFile(tokenFile, token);
  try {
    await writeFileAtomic(output, text, 0o600, { exclusive: !values.force });
  } catch (err) {
    if (!values.force && hasErrorCode(err, 'EEXIST'))
      throw new KubeconfigCommandError(`--output ${output} already exists; add --force to replace it`);
    writeFailure(err, output, '--output');
  }
  out.write(`wrote ${output} (mode 0600): server ${server}, context ${ENTRY}, token in ${tokenFile}\n`);
  out.write(`wrote ${tokenFile} (mode 0600): ${about.text}\n`);
  for (const w of about.warnings) out.write(`warning: ${w}\n`);
  if (output === DEFAULT_KUBECONFIG_PATH) out.write('Start or restart the service: systemctl restart wg-overlay\n');
}

/** Rotation: replaces the token file the existing kubeconfig names, nothing else. */
async function replaceToken(values: Values, out: NodeJS.WritableStream): Promise<void> {
  const output = values.output ?? DEFAULT_KUBECONFIG_PATH;
  const text = await readText(output, (err) => {
    if (!hasErrorCode(err, 'ENOENT'))
      throw new KubeconfigCommandError(
        `--output ${output} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    throw new KubeconfigCommandError(
      `--output ${output} does not exist: write it first with --server URL --ca FILE --token-file FILE`,
    );
  });
  const kc = new k8s.KubeConfig();
  try {
    kc.loadFromString(text);
  } catch {
    throw new KubeconfigCommandError(`--output ${output} is not a valid kubeconfig`);
  }
  const tokenFile = currentUserTokenFile(text, kc, output);
  if (!tokenFile || kc.getCurrentUser()?.token) {
    throw new KubeconfigCommandError(
      `--output ${output} embeds its token instead of naming a tokenFile (an older wg-overlay wrote it): ` +
        'write it once more with --server, --ca and --token-file and --force; after that --token-only works',
    );
  }
  const token = checkToken(await readInput(values['token-file']!, '--token-file'), values['token-file']!);
  const about = describeToken(token, values['token-file']!, await configuredNodeName(output));
  await writeTokenFile(tokenFile, token);
  out.write(`wrote ${tokenFile}: ${about.text}\n`);
  for (const w of about.warnings) out.write(`warning: ${w}\n`);
  out.write('wg-overlay uses the new token from its next request; no restart needed.\n');
}

/** The arguments' problem, or undefined when they make a valid call. */
function usageProblem(values: Values): string | undefined {
  if (values['token-only']) {
    const extra = (['server', 'ca', 'ca-data', 'force'] as const).filter((k) => values[k] !== undefined);
    if (extra.length > 0)
      return `--token-only replaces only the token: leave out ${extra.map((k) => `--${k}`).join(', ')}`;
    return values['token-file'] ? undefined : 'missing --token-file';
  }
  if (values.ca !== undefined && values['ca-data'] !== undefined) return 'give --ca or --ca-data, not both';
  const missing = [
    values.server ? '' : '--server',
    values.ca || values['ca-data'] ? '' : '--ca',
    values['token-file'] ? '' : '--token-file',
  ].filter(Boolean);
  return missing.length > 0 ? `missing ${missing.join(', ')}` : undefined;
}

/** Runs `wg-overlay kubeconfig ARGS`; resolves with the exit status (2: usage, 1: error). */
export async function kubeconfigCommand(
  argv: string[],
  out: NodeJS.WritableStream = process.stdout,
  errOut: NodeJS.WritableStream = process.stderr,
): Promise<number> {
  let values: Values & { help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        server: { type: 'string' },
        ca: { type: 'string' },
        'ca-data': { type: 'string' },
        'token-file': { type: 'string' },
        output: { type: 'string', short: 'o' },
        force: { type: 'boolean' },
        'token-only': { type: 'boolean' },
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
  const problem = usageProblem(values);
  if (problem) {
    errOut.write(`wg-overlay kubeconfig: ${problem}\n${KUBECONFIG_USAGE}`);
    return 2;
  }
  try {
    if (values['token-only']) await replaceToken(values, out);
    else await writeAll(values, out);
    return 0;
  } catch (err) {
    if (err instanceof KubeconfigCommandError) {
      errOut.write(`wg-overlay kubeconfig: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}
