/**
 * A long-lived `ip -force -batch -` co-process for route changes on the hot path: a route add
 * costs a line on a pipe instead of a process spawn (which blocks a Node.js event loop for
 * milliseconds). Completion is known without parsing stdout: after each job a deliberately
 * unknown command makes `ip` report "Command failed -:N" on stderr, and stderr is unbuffered
 * and in order, so every earlier line has finished (its own error, if any, came before).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Logger } from '../log/logger.js';
import { SerialQueue } from '../util/serial-queue.js';

interface Job {
  first: number;
  sentinel: number;
  errors: Map<number, string>;
  resolve(errors: Map<number, string>): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

/** Runs `ip` batch lines (e.g. `route add 10.0.0.0/24 dev wg0 proto 77`) in one long-lived process. */
export class IpBatch {
  private child: ChildProcess | undefined;
  private line = 0;
  private job: Job | undefined;
  private message: string[] = [];
  /** Batches, one at a time. */
  private readonly batches = new SerialQueue();

  /** `command` runs `ip` (tests prefix it with nsenter to work inside a test namespace). */
  constructor(
    private readonly log?: Logger,
    private readonly timeoutMs = 10_000,
    private readonly command: readonly string[] = ['ip'],
  ) {}

  /** Runs the lines in order; resolves with the error message of each failed line, by index. */
  run(lines: readonly string[]): Promise<Map<number, string>> {
    return this.batches.run(() => this.runNow(lines));
  }

  /** Ends the co-process. */
  close(): void {
    this.child?.kill();
    this.child = undefined;
  }

  private start(): ChildProcess {
    const [cmd, ...pre] = this.command;
    const child = spawn(cmd!, [...pre, '-force', '-batch', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
    this.line = 0;
    this.message = [];
    child.on('error', (err) => this.fail(child, new Error(`ip -batch: ${err.message}`)));
    child.on('exit', (code, signal) => this.fail(child, new Error(`ip -batch exited (${signal ?? code})`)));
    child.stdin!.on('error', () => undefined); // reported through 'exit'
    createInterface({ input: child.stderr! }).on('line', (text) => this.onStderr(text));
    this.log?.debug('started ip -force -batch - for route changes');
    return child;
  }

  private fail(child: ChildProcess, err: Error): void {
    if (this.child !== child) return;
    this.child = undefined;
    const job = this.job;
    this.job = undefined;
    if (job) {
      clearTimeout(job.timer);
      job.reject(err);
    }
  }

  private onStderr(text: string): void {
    const m = /^Command failed -:(\d+)$/.exec(text);
    if (!m) {
      this.message.push(text.trim());
      return;
    }
    const n = Number(m[1]);
    const message = this.message.join(' ');
    this.message = [];
    const job = this.job;
    if (!job) return;
    if (n === job.sentinel) {
      this.job = undefined;
      clearTimeout(job.timer);
      job.resolve(job.errors);
    } else if (n >= job.first && n < job.sentinel) {
      job.errors.set(n - job.first, message);
    }
  }

  private runNow(lines: readonly string[]): Promise<Map<number, string>> {
    if (lines.length === 0) return Promise.resolve(new Map());
    this.child ??= this.start();
    const child = this.child;
    return new Promise((resolve, reject) => {
      const first = this.line + 1;
      this.line += lines.length + 1;
      const timer = setTimeout(() => {
        this.log?.warning(`ip -batch did not finish within ${this.timeoutMs} ms; restarting it`);
        this.fail(child, new Error(`ip -batch: no answer within ${this.timeoutMs} ms`));
        child.kill();
      }, this.timeoutMs);
      this.job = { first, sentinel: this.line, errors: new Map(), resolve, reject, timer };
      for (const l of lines) this.log?.debug(`exec: ip -batch: ${l}`);
      child.stdin!.write(`${lines.join('\n')}\nwg-overlay-sync\n`);
    });
  }
}
