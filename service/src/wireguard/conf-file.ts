/**
 * The wg-quick file the daemon keeps (`/etc/wireguard/wg0.conf`): `set()` takes the latest config
 * and writes it after a delay that grows with the mesh, so changes share one write and never delay
 * the live apply; `flush()` writes at once (before a restart, which reads it, and when the daemon
 * stops), and a changed interface section is written at once.
 */
import { describeError, type Logger } from '../log/logger.js';
import { StateReporter } from '../util/backoff.js';
import { DebouncedWriter } from '../util/debounced-writer.js';
import { writeWgQuickFile, type WgQuickConfig } from './wgquick.js';

/** Keeps one wg-quick file equal to the latest config, written off the hot path. */
export class WgQuickFile {
  private pending: (() => WgQuickConfig) | undefined;
  private ok = true;
  private readonly writer: DebouncedWriter<boolean>;
  private readonly reporter = new StateReporter();
  /** Why the file could not be written the last time (undefined once it could). */
  error: string | undefined;

  /**
   * `delayMs`: how long a change waits for more before it is written (0 = at once, within `set`);
   * a function is asked each time (a large mesh waits longer, so a burst costs one write).
   */
  constructor(
    private readonly path: string,
    private readonly log: Logger,
    delayMs: number | (() => number) = 300,
  ) {
    this.writer = new DebouncedWriter({
      write: () => this.writePending(),
      delayMs: typeof delayMs === 'number' ? () => delayMs : delayMs,
    });
  }

  /**
   * Takes the latest config (built only when it is written); it is written after the delay (at
   * once when the delay is 0, or `urgent`: its interface section changed).
   */
  async set(cfg: () => WgQuickConfig, urgent = false): Promise<void> {
    this.pending = cfg;
    if (urgent) await this.writer.flush();
    else await this.writer.changed();
  }

  /** Writes the pending config now (writes never overlap); resolves whether the file is current. */
  flush(): Promise<boolean> {
    return this.writer.flush();
  }

  private async writePending(): Promise<boolean> {
    const build = this.pending;
    if (!build) return this.ok;
    this.pending = undefined;
    const cfg = build();
    try {
      const { changed } = await writeWgQuickFile(this.path, cfg);
      if (changed) this.log.info(`wrote ${this.path} (${cfg.peers.length} peers) (why: desired state changed)`);
      this.reporter.changed('conf', 'ok');
      this.error = undefined;
      this.ok = true;
    } catch (err) {
      this.ok = false;
      this.error = describeError(err);
      if (this.reporter.changed('conf', this.error)) this.log.error(this.error);
    }
    return this.ok;
  }
}
