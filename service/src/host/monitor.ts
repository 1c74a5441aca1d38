/**
 * Watches the kernel's routing and link events (`ip monitor route link`) so routes deleted from
 * outside, or an interface restarted by someone else, are repaired at once rather than at the
 * next periodic resync. Route additions (the daemon's own work) are ignored.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Logger } from '../log/logger.js';
import { ROUTE_PROTO } from './routes.js';

/**
 * Which `ip monitor` lines are drift: a deleted route on the interface or one of the daemon's own
 * (`proto 77`, also those through a next hop on the private network, as location members have),
 * and any change of the link itself. Route additions are the daemon's own work.
 */
export function driftFilter(iface: string): (line: string) => boolean {
  const name = iface.replace(/[.+]/g, '\\$&');
  const routeGone = new RegExp(`^Deleted .*(\\bdev ${name}\\b|\\bproto ${ROUTE_PROTO}\\b)`);
  const linkEvent = new RegExp(`^(Deleted )?\\d+: ${name}[:@]`);
  return (line) => routeGone.test(line) || linkEvent.test(line);
}

/** A running `ip monitor`; `stop()` ends it. */
export interface NetlinkMonitor {
  stop(): void;
}

/** Calls `onChange` for every line of {@link driftFilter}: route deletions and changes of the link itself. */
export function monitorInterface(iface: string, log: Logger, onChange: (line: string) => void): NetlinkMonitor {
  let child: ChildProcess | undefined;
  let stopped = false;
  let restartTimer: NodeJS.Timeout | undefined;
  const start = (): void => {
    child = spawn('ip', ['monitor', 'route', 'link'], { stdio: ['ignore', 'pipe', 'ignore'] });
    child.on('error', (err) => log.warning(`ip monitor could not run (${err.message}); relying on periodic resync`));
    const rl = createInterface({ input: child.stdout! });
    const drift = driftFilter(iface);
    rl.on('line', (line) => {
      if (drift(line)) onChange(line);
    });
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
