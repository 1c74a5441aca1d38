/**
 * The metrics and health endpoint as a daemon part: serves `/metrics` and `/healthz` on the
 * configured address, moves when a reload changes `[metrics] listen`, and never lets a failure
 * there end the daemon (a bind failure is a warning, anything unexpected one err line).
 */
import type { Config } from '../config/config.js';
import { describeError, type Logger } from '../log/logger.js';
import type { DaemonMetrics, HealthResult } from '../metrics/metrics.js';
import type { MetricsServer, startMetricsServer } from '../metrics/server.js';
import { SerialQueue } from '../util/serial-queue.js';
import type { Part } from './part.js';

/** What the metrics endpoint serves, and where. */
export interface MetricsEndpointOptions {
  metrics: DaemonMetrics;
  /** The `/healthz` verdict, asked per request. */
  health: () => HealthResult;
  log: Logger;
  /** Starts a server (tests give fakes). */
  serve: typeof startMetricsServer;
  /** The settings at start (`[metrics] listen`). */
  config: Config;
}

/** Serves the daemon's metrics and health verdict. */
export class MetricsEndpoint implements Part {
  readonly name = 'metrics endpoint';
  private server: MetricsServer | undefined;
  private listening = '';
  private config: Config;
  /** Moves and the final close, one at a time. */
  private readonly moves = new SerialQueue();

  constructor(private readonly o: MetricsEndpointOptions) {
    this.config = o.config;
  }

  start(): Promise<void> {
    return this.reconfigure(this.config);
  }

  /** Moves the server to the address of `config` (or turns it off); resolves when done. */
  reconfigure(config: Config): Promise<void> {
    this.config = config;
    return this.moves
      .run(() => this.listen(config))
      .catch((err: unknown) => {
        this.o.log.error(`metrics endpoint: unexpected error: ${describeError(err)}; the daemon goes on`);
      });
  }

  async stop(): Promise<void> {
    await this.moves
      .run(() => this.close())
      .catch((err: unknown) => {
        this.o.log.error(`metrics endpoint: closing: ${describeError(err)}`);
      });
  }

  private async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    this.listening = '';
    await server?.close();
  }

  private async listen(config: Config): Promise<void> {
    const want = config.metrics.listen ? `${config.metrics.listen.host}|${config.metrics.listen.port}` : '';
    if (want === this.listening) return;
    await this.close();
    this.listening = want;
    const { log } = this.o;
    if (!config.metrics.listen) {
      log.info('metrics and health server off ([metrics] listen is empty)');
      return;
    }
    const { host, port } = config.metrics.listen;
    try {
      this.server = await this.o.serve({ host, port, metrics: this.o.metrics, health: this.o.health, log });
    } catch (err) {
      log.warning(
        `cannot serve metrics on ${host}:${port} ([metrics] listen): ${describeError(err)}; running without metrics`,
      );
      return;
    }
    log.info(
      `metrics on http://${host.includes(':') ? `[${host}]` : host}:${this.server.address.port}/metrics, health on /healthz`,
    );
  }
}
