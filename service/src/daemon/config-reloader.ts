/**
 * Config reloads as a daemon part: SIGHUP (`systemctl reload`) and edits of the config file
 * (watched with chokidar) re-read and validate the file; a bad file keeps the running settings,
 * settings that need a restart keep their running values (with a warning), and any unexpected
 * failure is one err line — a reload never ends the daemon.
 */
import { stat } from 'node:fs/promises';
import { watch, type FSWatcher } from 'chokidar';
import { ConfigError, type Config, type LoadedConfig } from '../config/config.js';
import { describeError, type Logger } from '../log/logger.js';
import type { Notifier } from '../systemd/notify.js';
import { SerialQueue } from '../util/serial-queue.js';
import type { Part } from './part.js';
import { planReload } from './reload.js';

/** What the reloader needs from the daemon. */
export interface ReloadTarget {
  /** The settings running now. */
  running(): Config;
  /** Takes new settings; `changed` is false when nothing that applies at run time changed. */
  apply(next: Config, changed: boolean): void;
  /** Whether the daemon told systemd it is ready (before that, a reload is not announced). */
  ready(): boolean;
  /** The status line for systemd after a reload. */
  summary(): string;
}

/** Where SIGHUP comes from (the process, or a test's emitter). */
export interface SignalSource {
  on(signal: 'SIGHUP', fn: () => void): unknown;
  off(signal: 'SIGHUP', fn: () => void): unknown;
}

/** Loads the config, logging every problem; undefined when it is invalid. */
export async function loadOrReport(
  load: (path: string) => Promise<LoadedConfig>,
  path: string,
  log: Logger,
): Promise<Config | undefined> {
  try {
    const { config, warnings } = await load(path);
    for (const w of warnings) log.warning(w);
    return config;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const p of err.problems) log.error(p);
    return undefined;
  }
}

/** What the reloader reads, whom it tells, and where SIGHUP comes from. */
export interface ConfigReloaderOptions {
  /** The config file. */
  path: string;
  /** Reads and validates a config file. */
  load: (path: string) => Promise<LoadedConfig>;
  target: ReloadTarget;
  notifier: Notifier;
  log: Logger;
  signals: SignalSource;
  /** When the running config was read (ms): an edit after it, before the watch started, is picked up. */
  loadedAt: number;
}

/** Reloads the config on SIGHUP and when the file changes. */
export class ConfigReloader implements Part {
  readonly name = 'config reloader';
  private watcher: FSWatcher | undefined;
  private debounce: NodeJS.Timeout | undefined;
  /** Reloads, one at a time. */
  private readonly reloads = new SerialQueue();
  private readonly onHup = (): void => {
    void this.reload('SIGHUP');
  };

  constructor(private readonly o: ConfigReloaderOptions) {}

  start(): void {
    this.o.signals.on('SIGHUP', this.onHup);
    const watcher = watch(this.o.path, { ignoreInitial: true, awaitWriteFinish: false });
    this.watcher = watcher;
    watcher.on('all', () => {
      clearTimeout(this.debounce);
      this.debounce = setTimeout(() => {
        void this.reload('the file changed');
      }, 300);
    });
    watcher.on('error', (err) => this.o.log.warning(`watching ${this.o.path}: ${describeError(err)}`));
    watcher.on('ready', () => {
      stat(this.o.path).then(
        (st) => {
          if (st.mtimeMs >= this.o.loadedAt - 50) void this.reload('the file changed during start-up');
        },
        () => undefined,
      );
    });
  }

  async stop(): Promise<void> {
    this.o.signals.off('SIGHUP', this.onHup);
    clearTimeout(this.debounce);
    await this.watcher?.close();
    await this.reloads.idle();
  }

  /** Re-reads the file (after any reload in progress); resolves when done. */
  reload(why: string): Promise<void> {
    return this.reloads
      .run(() => this.reloadNow(why))
      .catch((err: unknown) => {
        this.o.log.error(
          `reload of ${this.o.path} failed unexpectedly (${describeError(err)}); still running with the previous configuration`,
        );
      });
  }

  private async reloadNow(why: string): Promise<void> {
    // RELOADING=1 … READY=1 only once the service is ready: before that, READY=1 would tell
    // systemd the start is done while the mesh is not applied yet.
    const announce = this.o.target.ready();
    if (announce) await this.o.notifier.reloading();
    this.o.log.info(`reloading ${this.o.path} (${why})`);
    try {
      const next = await loadOrReport(this.o.load, this.o.path, this.o.log);
      if (!next) {
        this.o.log.error(
          `reload of ${this.o.path} rejected: the file is invalid; still running with the previous configuration`,
        );
        return;
      }
      const plan = planReload(this.o.target.running(), next);
      for (const key of plan.needRestart)
        this.o.log.warning(
          `${key} changed in ${this.o.path}: it takes effect only after \`systemctl restart wg-overlay\`; still using the running value`,
        );
      this.o.target.apply(plan.config, plan.changed);
      if (!plan.changed) this.o.log.info('reload: nothing that applies at run time changed');
    } finally {
      if (announce) await this.o.notifier.ready(`mesh applied: ${this.o.target.summary()}`);
    }
  }
}
