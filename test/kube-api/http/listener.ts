/*
 * The listening socket: HTTPS with a fresh throwaway CA and server certificate (or plain HTTP),
 * on the configured address, and its shutdown, which also removes the TLS files.
 */
import { rm } from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { ResolvedOptions } from '../options.js';
import { generateTls, type TlsMaterial } from '../tls.js';

/** A listening server, its base URL and its TLS material (with TLS). */
export interface Listener {
  server: http.Server;
  url: string;
  tls?: TlsMaterial;
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/** Listens as the options say (generating TLS material first when enabled). */
export async function listen(opts: ResolvedOptions, handler: Handler): Promise<Listener> {
  const tls = opts.tls ? await generateTls([opts.host, ...(opts.sans ?? [])]) : undefined;
  let server: http.Server;
  if (tls) {
    server = https.createServer({ key: tls.keyPem, cert: tls.certPem }, handler);
    server.on('tlsClientError', () => undefined);
  } else {
    server = http.createServer(handler);
  }
  server.on('clientError', (_err, socket) => socket.destroy());
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port, opts.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    if (tls) await rm(tls.dir, { recursive: true, force: true });
    throw err;
  }
  return { server, url: baseUrl(opts, (server.address() as AddressInfo).port), tls };
}

/** The URL clients use: a wildcard listen address is reached over loopback. */
function baseUrl(opts: ResolvedOptions, port: number): string {
  let host = opts.host;
  if (host === '0.0.0.0') host = '127.0.0.1';
  if (host === '::') host = '::1';
  return `${opts.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** Closes the listener and every connection, and removes the TLS files. */
export async function close(l: Listener): Promise<void> {
  await new Promise<void>((resolve) => {
    l.server.close(() => resolve());
    l.server.closeAllConnections();
  });
  if (l.tls) await rm(l.tls.dir, { recursive: true, force: true });
}
