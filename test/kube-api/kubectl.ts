/*
 * Runs the real `kubectl` against a test API server: one-shot commands with captured output,
 * and long-running ones (`get -w`) whose stdout a test can wait on line by line. Each caller
 * passes its own kubeconfig and discovery cache directory (KUBECACHEDIR), because kubectl
 * caches discovery per host:port and ephemeral ports get reused by later servers.
 */
import { spawn, type ChildProcess } from 'node:child_process';

/** Where kubectl finds its cluster: the kubeconfig file and a private discovery cache directory. */
export interface KubectlEnv {
  kubeconfig: string;
  cacheDir: string;
}

/** The outcome of one kubectl run. */
export interface KubectlResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function env(e: KubectlEnv): NodeJS.ProcessEnv {
  return { ...process.env, KUBECONFIG: e.kubeconfig, KUBECACHEDIR: e.cacheDir, HOME: process.env.HOME ?? '/root' };
}

/** Runs `kubectl args...` to completion (killed after `timeoutMs`, default 20 s), feeding `input` on stdin. */
export function kubectl(
  e: KubectlEnv,
  args: string[],
  opts: { input?: string; timeoutMs?: number } = {},
): Promise<KubectlResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('kubectl', args, { env: env(e), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 20000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** Like `kubectl`, but rejects with stderr in the message unless the exit code is 0; resolves with stdout. */
export async function kubectlOk(
  e: KubectlEnv,
  args: string[],
  opts: { input?: string; timeoutMs?: number } = {},
): Promise<string> {
  const r = await kubectl(e, args, opts);
  if (r.code !== 0)
    throw new Error(`kubectl ${args.join(' ')} exited ${String(r.code)}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

/** A running kubectl whose stdout lines are collected and can be awaited. */
export class KubectlProcess {
  /** Every complete stdout line so far. */
  readonly lines: string[] = [];
  /** All stderr so far. */
  stderr = '';
  private partial = '';
  private waiters: Array<{ test: (l: string) => boolean; resolve: (l: string) => void }> = [];
  private readonly exited: Promise<number | null>;

  constructor(readonly child: ChildProcess) {
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      this.partial += d;
      let i: number;
      while ((i = this.partial.indexOf('\n')) >= 0) {
        const line = this.partial.slice(0, i);
        this.partial = this.partial.slice(i + 1);
        this.lines.push(line);
        this.waiters = this.waiters.filter((w) => {
          if (!w.test(line)) return true;
          w.resolve(line);
          return false;
        });
      }
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    this.exited = new Promise((resolve) => child.on('close', (code) => resolve(code)));
  }

  /** Resolves with the first stdout line (already seen or future) matching `pattern`; rejects after `timeoutMs`. */
  waitForLine(pattern: RegExp | string, timeoutMs = 10000): Promise<string> {
    const test = (l: string) => (typeof pattern === 'string' ? l.includes(pattern) : pattern.test(l));
    const seen = this.lines.find(test);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(
          new Error(
            `no kubectl output line matching ${String(pattern)} within ${timeoutMs} ms; ` +
              `stdout: ${JSON.stringify(this.lines)}; stderr: ${this.stderr}`,
          ),
        );
      }, timeoutMs);
      const waiter = {
        test,
        resolve: (l: string) => {
          clearTimeout(timer);
          resolve(l);
        },
      };
      this.waiters.push(waiter);
    });
  }

  /** Kills the process (SIGTERM) and waits until it has exited. */
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    await this.exited;
  }
}

/** Starts a long-running `kubectl args...` (e.g. `get nodes -w`). */
export function spawnKubectl(e: KubectlEnv, args: string[]): KubectlProcess {
  return new KubectlProcess(spawn('kubectl', args, { env: env(e), stdio: ['ignore', 'pipe', 'pipe'] }));
}
