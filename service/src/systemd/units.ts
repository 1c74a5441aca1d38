/**
 * systemd unit control over D-Bus (dbus-next): start or restart `wg-quick@<if>.service` and wait
 * for the job to finish, with a timeout and errors that name the unit. Also detects whether a
 * systemd manager is reachable at all, so the daemon can fall back to direct commands.
 */
import dbus from 'dbus-next';
import type { Logger } from '../log/logger.js';
import { describeError } from '../log/logger.js';

const SYSTEMD = 'org.freedesktop.systemd1';
const MANAGER_PATH = '/org/freedesktop/systemd1';
const MANAGER_IFACE = 'org.freedesktop.systemd1.Manager';

/** Starts and restarts units. */
export interface UnitController {
  /** Restarts the unit and resolves once its job finished successfully. */
  restartUnit(unit: string): Promise<void>;
  /** Starts the unit and resolves once its job finished successfully. */
  startUnit(unit: string): Promise<void>;
  /** Closes the bus connection. */
  close(): void;
}

interface ManagerProxy {
  Subscribe(): Promise<void>;
  RestartUnit(name: string, mode: string): Promise<string>;
  StartUnit(name: string, mode: string): Promise<string>;
  on(signal: 'JobRemoved', cb: (id: number, job: string, unit: string, result: string) => void): void;
}

/** systemd's Manager on the system bus (`DBUS_SYSTEM_BUS_ADDRESS` selects a private bus in tests). */
export class SystemdUnits implements UnitController {
  private readonly finished = new Map<string, string>();
  private readonly waiters = new Map<string, (result: string) => void>();

  private constructor(private readonly bus: dbus.MessageBus, private readonly manager: ManagerProxy, private readonly timeoutMs: number) {
    manager.on('JobRemoved', (_id, job, _unit, result) => {
      const w = this.waiters.get(job);
      if (w) { this.waiters.delete(job); w(result); } else this.finished.set(job, result);
    });
  }

  /** Connects to the system bus; resolves undefined (and says why at debug) when no systemd answers there. */
  static async connect(log: Logger, timeoutMs = 30_000): Promise<SystemdUnits | undefined> {
    let bus: dbus.MessageBus | undefined;
    try {
      bus = dbus.systemBus();
      const connected = bus;
      let probing = true;
      let timer: NodeJS.Timeout | undefined;
      const failed = new Promise<never>((_, reject) => {
        // Errors while probing (no socket, refused) end the probe; later ones are logged.
        connected.on('error', (err: unknown) => {
          if (probing) reject(err);
          else log.warning(`D-Bus connection error: ${describeError(err)}`);
        });
        timer = setTimeout(() => reject(new Error('no answer within 2 s')), 2000);
      });
      const probe = (async () => {
        const obj = await connected.getProxyObject(SYSTEMD, MANAGER_PATH);
        const manager = obj.getInterface(MANAGER_IFACE) as unknown as ManagerProxy;
        await manager.Subscribe();
        return manager;
      })();
      try {
        const manager = await Promise.race([probe, failed]);
        return new SystemdUnits(connected, manager, timeoutMs);
      } finally {
        probing = false;
        clearTimeout(timer);
        failed.catch(() => undefined);
        probe.catch(() => undefined);
      }
    } catch (err) {
      log.debug(`no systemd on the system bus (${describeError(err)})`);
      try { bus?.disconnect(); } catch { /* already gone */ }
      return undefined;
    }
  }

  private async runJob(verb: 'RestartUnit' | 'StartUnit', unit: string): Promise<void> {
    let job: string;
    try {
      job = await this.manager[verb](unit, 'replace');
    } catch (cause) {
      throw new Error(`${verb} ${unit} over D-Bus: ${describeError(cause)}`, { cause });
    }
    const early = this.finished.get(job);
    const result = early ?? await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiters.delete(job);
        reject(new Error(`${verb} ${unit}: job ${job} did not finish within ${Math.round(this.timeoutMs / 1000)} s`));
      }, this.timeoutMs);
      this.waiters.set(job, (r) => { clearTimeout(t); resolve(r); });
    });
    this.finished.delete(job);
    if (result !== 'done') throw new Error(`${verb} ${unit}: job ended with result "${result}" (see journalctl -u ${unit})`);
  }

  restartUnit(unit: string): Promise<void> {
    return this.runJob('RestartUnit', unit);
  }

  startUnit(unit: string): Promise<void> {
    return this.runJob('StartUnit', unit);
  }

  close(): void {
    try { this.bus.disconnect(); } catch { /* already closed */ }
  }
}
