/**
 * The metrics and health HTTP server: `GET /metrics` (Prometheus text format) and
 * `GET /healthz` (200 "ok", or 503 with every reason). Listens on loopback by default
 * (`[metrics] listen`); nothing else is served.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../log/logger.js';
import { describeError } from '../log/logger.js';
import type { DaemonMetrics, HealthResult } from './metrics.js';

/** A running metrics server. */
export interface MetricsServer {
  /** The address actually bound (port 0 resolved). */
  address: { host: string; port: number };
  close(): Promise<void>;
}

/** Starts the server; rejects when the address cannot be bound. */
export async function startMetricsServer(opts: {
  host: string;
  port: number;
  metrics: DaemonMetrics;
  health: () => HealthResult;
  log?: Logger;
}): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res
        .writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8' })
        .end('method not allowed\n');
      return;
    }
    if (path === '/healthz') {
      const h = opts.health();
      const body = h.ok ? 'ok\n' : `unhealthy: ${h.reasons.join('; ')}\n`;
      res.writeHead(h.ok ? 200 : 503, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    if (path === '/metrics') {
      opts.metrics.render().then(
        ({ contentType, body }) => {
          res.writeHead(200, { 'Content-Type': contentType, 'Cache-Control': 'no-store' });
          res.end(req.method === 'HEAD' ? undefined : body);
        },
        (err: unknown) => {
          opts.log?.warning(`rendering metrics: ${describeError(err)}`);
          res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' }).end('error rendering metrics\n');
        },
      );
      return;
    }
    res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('not found: try /metrics or /healthz\n');
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address() as AddressInfo;
  return {
    address: { host: a.address, port: a.port },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
