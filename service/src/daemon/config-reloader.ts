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

/** Reloads the config on SIGHUP and when the file changes. */
export class ConfigReloader implements Part {
  readonly name = 'config reloader';
  private watcher: FSWatcher | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private chain = Promise.resolve();
  private readonly onHup = (): void => {
    void this.reload('SIGHUP');
  };

  constructor(
    private readonly path: string,
    private readonly load: (path: string) => Promise<LoadedConfig>,
    private readonly target: ReloadTarget,
    private readonly notifier: Notifier,
    private readonly log: Logger,
    private readonly signals: SignalSource,
    /** When the running config was read (ms): an edit after it, before the watch started, is picked up. */
    private readonly loadedAt: number,
  ) {}

  start(): void {
    this.signals.on('SIGHUP', this.onHup);
    const watcher = watch(this.path, { ignoreInitial: true, awaitWriteFinish: false });
    this.watcher = watcher;
    watcher.on('all', () => {
      clearTimeout(this.debounce);
      this.debounce = setTimeout(() => {
        void this.reload('the file changed');
      }, 300);
    });
    watcher.on('error', (err) => this.log.warning(`watching ${this.path}: ${describeError(err)}`));
    watcher.on('ready', () => {
      stat(this.path).then(
        (st) => {
          if (st.mtimeMs >= this.loadedAt - 50) void this.reload('the file changed during start-up');
        },
        () => undefined,
      );
    });
  }

  async stop(): Promise<void> {
    this.signals.off('SIGHUP', this.onHup);
    clearTimeout(this.debounce);
    await this.watcher?.close();
    await this.chain;
  }

  /** Re-reads the file (after any reload in progress); resolves when done. */
  reload(why: string): Promise<void> {
    this.chain = this.chain
      .then(() => this.reloadNow(why))
      .catch((err: unknown) => {
        this.log.error(
          `reload of ${this.path} failed unexpectedly (${describeError(err)}); still running with the previous configuration`,
        );
      });
    return this.chain;
  }

  private async reloadNow(why: string): Promise<void> {
    // RELOADING=1 … READY=1 only once the service is ready: before that, READY=1 would tell
    // systemd the start is done while the mesh is not applied yet.
    const announce = this.target.ready();
    if (announce) await this.notifier.reloading();
    this.log.info(`reloading ${this.path} (${why})`);
    try {
      const next = await loadOrReport(this.load, this.path, this.log);
      if (!next) {
        this.log.error(
          `reload of ${this.path} rejected: the file is invalid; still running with the previous configuration`,
        );
        return;
      }
      const plan = planReload(this.target.running(), next);
      for (const key of plan.needRestart)
        this.log.warning(
          `${key} changed in ${this.path}: it takes effect only after \`systemctl restart wg-overlay\`; still using the running value`,
        );
      this.target.apply(plan.config, plan.changed);
      if (!plan.changed) this.log.info('reload: nothing that applies at run time changed');
    } finally {
      if (announce) await this.notifier.ready(`mesh applied: ${this.target.summary()}`);
    }
  }
}
