/**
 * Crash-safe file writes: the data goes to a temporary file in the target's directory, is
 * fsynced, then renamed (or hard-linked, for create-only writes) over the target and the
 * directory is fsynced, so readers and a crash see either the old file or the whole new one.
 */
import { randomBytes } from 'node:crypto';
import { link, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Options of {@link writeFileAtomic}. */
export interface WriteFileAtomicOptions {
  /**
   * Create the file only if it does not exist yet: the write fails (with an error whose `cause`
   * has code `EEXIST`) instead of replacing an existing file, even one created concurrently.
   */
  exclusive?: boolean;
}

/**
 * Writes `data` to `path` atomically with exactly the given mode (not reduced by the umask);
 * on failure the temporary file is removed and the error names the path.
 */
export async function writeFileAtomic(
  path: string,
  data: string | Buffer,
  mode: number,
  options: WriteFileAtomicOptions = {},
): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
  let tmpExists = false;
  try {
    const fh = await open(tmp, 'wx', mode);
    tmpExists = true;
    try {
      await fh.chmod(mode);
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (options.exclusive) {
      await link(tmp, path);
      await unlink(tmp);
    } else {
      await rename(tmp, path);
    }
    tmpExists = false;
    await fsyncDir(dir);
  } catch (cause) {
    if (tmpExists) await unlink(tmp).catch(() => undefined);
    throw new Error(`writing ${path}`, { cause });
  }
}

/** Flushes a directory's entries (a rename or a new link) to disk. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } catch (err) {
    // Some file systems cannot fsync a directory; the rename itself already happened.
    if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
  } finally {
    await fh.close();
  }
}

/** Whether `err` (or the error it wraps as `cause`, at any depth) is a system error with `code`. */
export function hasErrorCode(err: unknown, code: string): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 10; e = e.cause, depth++) {
    if ((e as NodeJS.ErrnoException).code === code) return true;
  }
  return false;
}
