/**
 * Whether a process exists, for status and for clean-up after processes that are gone.
 */

/** Whether a process with this pid exists (signal 0: EPERM means it does, as another user's). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
