/**
 * sd_notify(3) for Node, which cannot open a unix datagram socket itself. Two ways:
 *  - `WG_OVERLAY_NOTIFY_FD`: a datagram socket already connected to `$NOTIFY_SOCKET`, inherited
 *    from `/usr/lib/wg-overlay/notify-socket` (wg-overlay.service starts the daemon through it).
 *    Each write(2) to it is one datagram sent by this process, so systemd sees the main PID as
 *    the sender and the unit can use `NotifyAccess=main`, also as an unprivileged user.
 *  - otherwise `systemd-notify --pid=<this process>` as a child. Its messages carry its own PID
 *    unless it runs as root (claiming another PID needs CAP_SYS_ADMIN), so as non-root this needs
 *    `NotifyAccess=all`.
 * Does nothing when not started by systemd (no NOTIFY_SOCKET), so the daemon runs the same by
 * hand, in tests and in the demo.
 */
import { execFile } from 'node:child_process';
import { write } from 'node:fs';
import type { Logger } from '../log/logger.js';
import { describeError } from '../log/logger.js';

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

/** The environment variable naming the inherited notification socket's file descriptor. */
export const NOTIFY_FD_ENV = 'WG_OVERLAY_NOTIFY_FD';

/** One notification: `KEY=value` assignments (a status line is kept to one line). */
type Assignments = Array<[string, string]>;

const oneLine = (s: string): string => s.replace(/[\r\n]+/g, ' ');

/** The datagram sd_notify(3) sends: one `KEY=value` per line. */
export function notifyDatagram(assignments: Assignments): string {
  return assignments.map(([k, v]) => `${k}=${oneLine(v)}`).join('\n');
}

/** systemd-notify's arguments for the same assignments. */
function notifyArgs(assignments: Assignments): string[] {
  return assignments.map(([k, v]) =>
    k === 'READY' && v === '1' ? '--ready' : k === 'STATUS' ? `--status=${oneLine(v)}` : `${k}=${oneLine(v)}`,
  );
}

/**
 * A Notifier that writes to the inherited socket when `WG_OVERLAY_NOTIFY_FD` is set (falling back
 * to `systemd-notify` for good if a write fails), runs `systemd-notify` when only NOTIFY_SOCKET is
 * set, and does nothing otherwise.
 */
export function createNotifier(log: Logger, env: NodeJS.ProcessEnv = process.env): Notifier {
  const enabled = Boolean(env.NOTIFY_SOCKET);
  const fdText = env[NOTIFY_FD_ENV];
  let fd = enabled && fdText !== undefined && /^\d+$/.test(fdText) ? Number(fdText) : undefined;

  const viaChild = (assignments: Assignments): Promise<void> =>
    new Promise((resolve) => {
      // --pid names the daemon as the sender's main process so the message is attributed to the unit.
      const args = notifyArgs(assignments);
      execFile('systemd-notify', [`--pid=${process.pid}`, ...args], { env }, (err, _stdout, stderr) => {
        if (err) log.warning(`systemd-notify ${args.join(' ')} failed: ${stderr.trim() || err.message}`);
        resolve();
      });
    });

  const viaSocket = (socketFd: number, assignments: Assignments): Promise<boolean> =>
    new Promise((resolve) => {
      write(socketFd, Buffer.from(notifyDatagram(assignments)), (err) => {
        if (err) {
          log.warning(
            `notifying systemd through file descriptor ${socketFd} (${NOTIFY_FD_ENV}) failed: ${describeError(err)}; ` +
              'using systemd-notify from now on',
          );
          resolve(false);
        } else {
          resolve(true);
        }
      });
    });

  const send = async (assignments: Assignments): Promise<void> => {
    if (!enabled) return;
    if (fd !== undefined) {
      if (await viaSocket(fd, assignments)) return;
      fd = undefined;
    }
    await viaChild(assignments);
  };
  return {
    ready: (status) =>
      send([
        ['READY', '1'],
        ['STATUS', status],
      ]),
    reloading: () => send([['RELOADING', '1']]),
    stopping: () => send([['STOPPING', '1']]),
    status: (text) => send([['STATUS', text]]),
  };
}
