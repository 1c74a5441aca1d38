/**
 * Why a file could not be read, in the same words wherever a message names the file (the config
 * file, the token file, the kubeconfig command's inputs).
 */

/** Completes "<file> …": `does not exist`, `is not readable (permission denied)`, or `cannot be read (<code>)`. */
export function whyUnreadable(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return 'does not exist';
  if (code === 'EACCES') return 'is not readable (permission denied)';
  return `cannot be read (${code ?? String(err)})`;
}
