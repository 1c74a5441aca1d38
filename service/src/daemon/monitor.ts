/**
 * Watches the kernel's routing and link events (`ip monitor route link`) so routes deleted from
 * outside, or an interface restarted by someone else, are repaired at once rather than at the
 * next periodic resync.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Logger } from '../log/logger.js';

/** A running `ip monitor`; `stop()` ends it. */
export interface NetlinkMonitor {
  stop(): void;
}

/** Calls `onChange` for every event line that mentions the interface (or a change of it). */
export function monitorInterface(iface: string, log: Logger, onChange: (line: string) => void): NetlinkMonitor {
  let child: ChildProcess | undefined;
  let stopped = false;
  let restartTimer: NodeJS.Timeout | undefined;
  const start = (): void => {
    child = spawn('ip', ['monitor', 'route', 'link'], { stdio: ['ignore', 'pipe', 'ignore'] });
    child.on('error', (err) => log.warning(`ip monitor could not run (${err.message}); relying on periodic resync`));
    const rl = createInterface({ input: child.stdout! });
    const needle = new RegExp(`(\\bdev ${iface.replace(/[.+]/g, '\\$&')}\\b)|(^\\d+: ${iface.replace(/[.+]/g, '\\$&')}[:@])|(^Deleted \\d+: ${iface}[:@])`);
    rl.on('line', (line) => { if (needle.test(line)) onChange(line); });
    child.on('exit', () => {
      if (!stopped) restartTimer = setTimeout(start, 1000);
    });
  };
  start();
  return {
    stop: () => {
      stopped = true;
      clearTimeout(restartTimer);
      child?.kill();
    },
  };
}
