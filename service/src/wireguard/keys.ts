/**
 * WireGuard keys: generate a private key like `wg genkey`, derive its public key like
 * `wg pubkey` (X25519 via node:crypto, Node >= 18.19), validate the base64 form, and load or
 * create the node's persistent private key. Private keys never appear in errors or logs.
 */
import { createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { mkdir, open } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { isValidKey } from '../mesh/membership/keys.js';
import { hasErrorCode, writeFileAtomic } from '../util/atomic-file.js';

export { isValidKey };

/** PKCS#8 DER prefix of an X25519 private key; the 32 raw key bytes follow it. */
const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

/** Name of the private key file inside the state directory. */
export const PRIVATE_KEY_FILE = 'private.key';

/** Generates a new private key (base64, 32 random bytes clamped for X25519 like `wg genkey`). */
export function generatePrivateKey(): string {
  const raw = randomBytes(32);
  raw[0] = raw[0]! & 248;
  raw[31] = (raw[31]! & 127) | 64;
  return raw.toString('base64');
}

/** Derives the public key of a base64 private key, like `wg pubkey`; throws on an invalid key. */
export function publicKeyFromPrivate(priv: string): string {
  if (!isValidKey(priv))
    throw new Error('deriving public key: the private key is not 44 characters of base64 encoding 32 bytes');
  const key = createPrivateKey({
    key: Buffer.concat([PKCS8_X25519_PREFIX, Buffer.from(priv, 'base64')]),
    format: 'der',
    type: 'pkcs8',
  });
  const jwk = createPublicKey(key).export({ format: 'jwk' });
  if (typeof jwk.x !== 'string') throw new Error('deriving public key: node:crypto returned no X25519 public key');
  return Buffer.from(jwk.x, 'base64url').toString('base64');
}

/** The node's key pair as loaded or created by {@link loadOrCreatePrivateKey}. */
export interface LoadedKey {
  privateKey: string;
  publicKey: string;
  /** True when no key file existed and a new key was generated and saved. */
  created: boolean;
  /** True when the key file was readable by group or others and its mode was set to 0600 (worth a warning). */
  fixedMode: boolean;
}

/**
 * Loads `<stateDir>/private.key`, or generates and saves a new key when the file does not exist
 * (creating stateDir with mode 0700); an invalid file is an error naming the path, never its content.
 */
export async function loadOrCreatePrivateKey(stateDir: string): Promise<LoadedKey> {
  return loadOrCreateKeyFile(join(stateDir, PRIVATE_KEY_FILE));
}

/**
 * Loads the private key file `path`, or generates and saves a new key there (mode 0600) when it
 * does not exist, creating its directory with mode 0700; an invalid file is an error naming the path.
 */
export async function loadOrCreateKeyFile(path: string): Promise<LoadedKey> {
  const dir = dirname(path);
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (cause) {
    throw new Error(`creating state directory ${dir}`, { cause });
  }
  const existing = await readKeyFile(path);
  if (existing) return { ...existing, created: false };

  const privateKey = generatePrivateKey();
  try {
    await writeFileAtomic(path, `${privateKey}\n`, 0o600, { exclusive: true });
  } catch (err) {
    // Another process created the key between our read and our write: use that one.
    if (!hasErrorCode(err, 'EEXIST')) throw new Error(`saving new private key to ${path}`, { cause: err });
    const raced = await readKeyFile(path);
    if (!raced) throw new Error(`saving new private key to ${path}: the file vanished after a concurrent create`);
    return { ...raced, created: false };
  }
  return { privateKey, publicKey: publicKeyFromPrivate(privateKey), created: true, fixedMode: false };
}

/** Replaces `<stateDir>/private.key` with a newly generated key (atomically, mode 0600) and returns it. */
export async function rotatePrivateKey(stateDir: string): Promise<LoadedKey> {
  const path = join(stateDir, PRIVATE_KEY_FILE);
  const privateKey = generatePrivateKey();
  try {
    await writeFileAtomic(path, `${privateKey}\n`, 0o600);
  } catch (cause) {
    throw new Error(`saving a new private key to ${path}`, { cause });
  }
  return { privateKey, publicKey: publicKeyFromPrivate(privateKey), created: true, fixedMode: false };
}

/** Reads and validates an existing key file (fixing a loose mode); undefined when it does not exist. */
async function readKeyFile(path: string): Promise<Omit<LoadedKey, 'created'> | undefined> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (cause) {
    if (hasErrorCode(cause, 'ENOENT')) return undefined;
    throw new Error(`reading private key ${path}`, { cause });
  }
  let text: string;
  let fixedMode = false;
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new Error('not a regular file');
    if ((st.mode & 0o077) !== 0) {
      await fh.chmod(0o600);
      fixedMode = true;
    }
    text = await fh.readFile('utf8');
  } catch (cause) {
    throw new Error(`reading private key ${path}`, { cause });
  } finally {
    await fh.close();
  }
  const privateKey = text.trim();
  if (!isValidKey(privateKey)) {
    throw new Error(
      `private key file ${path} is invalid: expected one line of 44 base64 characters encoding 32 bytes ` +
        `(as written by \`wg genkey\`); restore the original key, or move the file away to have a new key generated`,
    );
  }
  return { privateKey, publicKey: publicKeyFromPrivate(privateKey), fixedMode };
}
