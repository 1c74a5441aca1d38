/**
 * The status socket (`<runtime_dir>/status.sock`): `wg-overlay status` asks the running daemon
 * for its status snapshot, built from memory at that moment, so the status file need not be
 * rewritten for every change of a large mesh (it is written at a bounded rate, as a fallback).
 */
import { chmod, mkdir, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { describeError, type Logger } from '../log/logger.js';
import { STATUS_SOCKET } from '../status/snapshot.js';
import type { Part } from './part.js';
import type { StatusSource } from './status-writer.js';

/** Serves the snapshot the source builds on the socket in the directory it names. */
export class StatusServer implements Part {
  readonly name = 'status socket';
  private server: Server | undefined;
  private path: string | undefined;

  constructor(
    private readonly source: StatusSource,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    const dir = this.source.dir();
    const path = join(dir, STATUS_SOCKET);
    try {
      await mkdir(dir, { recursive: true, mode: 0o755 });
      await rm(path, { force: true });
      const server = createServer((req, res) => {
        const body = `${JSON.stringify(this.source.build())}\n`;
        res.writeHead(req.method === 'GET' ? 200 : 405, { 'content-type': 'application/json' });
        res.end(req.method === 'GET' ? body : '');
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => resolve());
      });
      // Like the status file: readable by anyone on the node (public keys and addresses only).
      await chmod(path, 0o666);
      this.server = server;
      this.path = path;
    } catch (err) {
      this.log.warning(
        `cannot serve the status socket ${path}: ${describeError(err)}; \`wg-overlay status\` reads the status file`,
      );
    }
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    if (this.path) await rm(this.path, { force: true });
  }
}
