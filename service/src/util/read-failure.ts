/**
 * Why a file could not be read, in the same words wherever a message names the file (the config
 * file, the token file, the kubeconfig command's inputs); and reading a file's text with what a
 * failure means to the caller.
 */
import { readFile } from 'node:fs/promises';

/** The text of `path` (UTF-8); when it cannot be read, what `failed` makes of the error (it throws, or returns a value instead). */
export async function readText<T = never>(path: string, failed: (err: unknown) => T): Promise<string | T> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    return failed(err);
  }
}

/** Completes "<file> …": `does not exist`, `is not readable (permission denied)`, or `cannot be read (<code>)`. */
export function whyUnreadable(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return 'does not exist';
  if (code === 'EACCES') return 'is not readable (permission denied)';
  return `cannot be read (${code ?? String(err)})`;
}
