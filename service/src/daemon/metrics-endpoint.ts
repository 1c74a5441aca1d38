/**
 * The metrics and health endpoint as a daemon part: serves `/metrics` and `/healthz` on the
 * configured address, moves when a reload changes `[metrics] listen`, and never lets a failure
 * there end the daemon (a bind failure is a warning, anything unexpected one err line).
 */
import type { Config } from '../config/config.js';
import { describeError, type Logger } from '../log/logger.js';
import type { DaemonMetrics, HealthResult } from '../metrics/metrics.js';
import type { MetricsServer, startMetricsServer } from '../metrics/server.js';
import type { Part } from './part.js';

/** Serves the daemon's metrics and health verdict. */
export class MetricsEndpoint implements Part {
  readonly name = 'metrics endpoint';
  private server: MetricsServer | undefined;
  private listening = '';
  private chain = Promise.resolve();

  constructor(
    private readonly metrics: DaemonMetrics,
    private readonly health: () => HealthResult,
    private readonly log: Logger,
    private readonly serve: typeof startMetricsServer,
    private config: Config,
  ) {}

  start(): Promise<void> {
    return this.reconfigure(this.config);
  }

  /** Moves the server to the address of `config` (or turns it off); resolves when done. */
  reconfigure(config: Config): Promise<void> {
    this.config = config;
    this.chain = this.chain
      .then(() => this.listen(config))
      .catch((err: unknown) => {
        this.log.error(`metrics endpoint: unexpected error: ${describeError(err)}; the daemon goes on`);
      });
    return this.chain;
  }

  async stop(): Promise<void> {
    this.chain = this.chain
      .then(() => this.close())
      .catch((err: unknown) => {
        this.log.error(`metrics endpoint: closing: ${describeError(err)}`);
      });
    await this.chain;
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
    if (!config.metrics.listen) {
      this.log.info('metrics and health server off ([metrics] listen is empty)');
      return;
    }
    const { host, port } = config.metrics.listen;
    try {
      this.server = await this.serve({ host, port, metrics: this.metrics, health: this.health, log: this.log });
    } catch (err) {
      this.log.warning(
        `cannot serve metrics on ${host}:${port} ([metrics] listen): ${describeError(err)}; running without metrics`,
      );
      return;
    }
    this.log.info(
      `metrics on http://${host.includes(':') ? `[${host}]` : host}:${this.server.address.port}/metrics, health on /healthz`,
    );
  }
}
