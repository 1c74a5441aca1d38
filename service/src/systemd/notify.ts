/**
 * sd_notify(3) for Node, which cannot send unix datagrams itself: runs `systemd-notify` as a
 * child (the unit sets `NotifyAccess=all`). Does nothing when not started by systemd
 * (no NOTIFY_SOCKET), so the daemon runs the same by hand, in tests and in the demo.
 */
import { execFile } from 'node:child_process';
import type { Logger } from '../log/logger.js';

/** Sends readiness, stopping and status notifications to the service manager. */
export interface Notifier {
  /** READY=1, with a status line. */
  ready(status: string): Promise<void>;
  /** RELOADING=1 before a config reload; ready() afterwards. */
  reloading(): Promise<void>;
  /** STOPPING=1. */
  stopping(): Promise<void>;
  /** STATUS=… shown by `systemctl status`. */
  status(text: string): Promise<void>;
}

/** A Notifier that runs `systemd-notify` when NOTIFY_SOCKET is set, and does nothing otherwise. */
export function createNotifier(log: Logger, env: NodeJS.ProcessEnv = process.env): Notifier {
  const enabled = Boolean(env.NOTIFY_SOCKET);
  const send = (args: string[]): Promise<void> => new Promise((resolve) => {
    if (!enabled) { resolve(); return; }
    // --pid names the daemon as the sender's main process so the message is attributed to the unit.
    execFile('systemd-notify', [`--pid=${process.pid}`, ...args], { env }, (err, _stdout, stderr) => {
      if (err) log.warning(`systemd-notify ${args.join(' ')} failed: ${stderr.trim() || err.message}`);
      resolve();
    });
  });
  return {
    ready: (status) => send(['--ready', `--status=${status}`]),
    reloading: () => send(['RELOADING=1']),
    stopping: () => send(['STOPPING=1']),
    status: (text) => send([`--status=${text}`]),
  };
}
