/**
 * Watches the kernel's routing and link events (`ip monitor route link`) so routes deleted from
 * outside, or an interface restarted by someone else, are repaired at once rather than at the
 * next periodic resync. Route additions (the daemon's own work) are ignored.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Logger } from '../log/logger.js';

/** A running `ip monitor`; `stop()` ends it. */
export interface NetlinkMonitor {
  stop(): void;
}

/** Calls `onChange` for every route deletion on the interface and every change of the link itself. */
export function monitorInterface(iface: string, log: Logger, onChange: (line: string) => void): NetlinkMonitor {
  let child: ChildProcess | undefined;
  let stopped = false;
  let restartTimer: NodeJS.Timeout | undefined;
  const start = (): void => {
    child = spawn('ip', ['monitor', 'route', 'link'], { stdio: ['ignore', 'pipe', 'ignore'] });
    child.on('error', (err) => log.warning(`ip monitor could not run (${err.message}); relying on periodic resync`));
    const rl = createInterface({ input: child.stdout! });
    const name = iface.replace(/[.+]/g, '\\$&');
    // Route additions are what the daemon itself does: only deletions and link changes are drift.
    const routeGone = new RegExp(`^Deleted .*\\bdev ${name}\\b`);
    const linkEvent = new RegExp(`^(Deleted )?\\d+: ${name}[:@]`);
    rl.on('line', (line) => { if (routeGone.test(line) || linkEvent.test(line)) onChange(line); });
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
