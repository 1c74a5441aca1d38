/*
 * TLS material for the test API server, made with the `openssl` CLI: a throwaway self-signed
 * CA and a server certificate it signs, with subjectAltNames for the listen address,
 * 127.0.0.1, ::1 and localhost (plus any extra names), in a private temporary directory.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** PEM files of a generated CA and server certificate, and the directory holding them. */
export interface TlsMaterial {
  dir: string;
  caPem: string;
  caFile: string;
  certPem: string;
  keyPem: string;
}

/** The subjectAltName extension value for a set of host names and IP addresses. */
export function subjectAltNames(names: Iterable<string>): string {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const raw of names) {
    const n = raw.replace(/^\[|\]$/g, '');
    if (!n || seen.has(n)) continue;
    seen.add(n);
    out.push(isIP(n) ? `IP:${n}` : `DNS:${n}`);
  }
  return out.join(',');
}

/** Where the files of one generation go. */
type Files = (name: string) => string;

/** Arguments that make openssl generate an EC P-256 key without a passphrase. */
const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** A self-signed CA certificate and its key (ca.crt, ca.key). */
async function makeCa(p: Files): Promise<void> {
  await run('openssl', [
    'req',
    '-x509',
    ...EC_KEY,
    '-keyout',
    p('ca.key'),
    '-out',
    p('ca.crt'),
    '-days',
    '2',
    '-subj',
    '/CN=kube-api-test-ca',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
}

/** The server's key and a certificate for it signed by the CA, valid for `names` and the local names (server.key, server.crt). */
async function makeServerCertificate(p: Files, names: string[]): Promise<void> {
  await run('openssl', [
    'req',
    '-new',
    ...EC_KEY,
    '-keyout',
    p('server.key'),
    '-out',
    p('server.csr'),
    '-subj',
    '/CN=kube-apiserver',
  ]);
  const sans = subjectAltNames(['127.0.0.1', '::1', 'localhost', 'kubernetes', 'kubernetes.default.svc', ...names]);
  await writeFile(
    p('server.ext'),
    [
      `subjectAltName=${sans}`,
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth',
      '',
    ].join('\n'),
  );
  await run('openssl', [
    'x509',
    '-req',
    '-in',
    p('server.csr'),
    '-CA',
    p('ca.crt'),
    '-CAkey',
    p('ca.key'),
    '-set_serial',
    '0x' + randomBytes(8).toString('hex'),
    '-days',
    '2',
    '-extfile',
    p('server.ext'),
    '-out',
    p('server.crt'),
  ]);
}

/** Generates a CA and a server certificate valid for `names` with openssl (EC P-256, 2 days). */
export async function generateTls(names: string[]): Promise<TlsMaterial> {
  const dir = await mkdtemp(join(tmpdir(), 'kube-api-tls-'));
  try {
    const p = (f: string) => join(dir, f);
    await makeCa(p);
    await makeServerCertificate(p, names);
    return {
      dir,
      caFile: p('ca.crt'),
      caPem: await readFile(p('ca.crt'), 'utf8'),
      certPem: await readFile(p('server.crt'), 'utf8'),
      keyPem: await readFile(p('server.key'), 'utf8'),
    };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
