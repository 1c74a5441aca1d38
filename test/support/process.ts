/**
 * Running commands and long-running processes for the tests: `run` (to completion, with a
 * {@link CommandError} carrying stderr on failure), `hasCommand`/`requireTools` (the environment
 * check every hook starts with), and {@link TestProcess} (a child whose output can be awaited).
 * Namespaced variants are the `exec`/`spawn` methods of TestNode (netns.ts) and TestPod (pods.ts).
 */
import { execa, type ResultPromise } from 'execa';

// ---------------------------------------------------------------------------------------------
// Running commands

/** Options of {@link run}. */
export interface RunOptions {
  /** Text written to the command's stdin. */
  input?: string;
  /** Kill the command after this long (default 30 s). */
  timeoutMs?: number;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Resolve with the result instead of throwing when the command fails. */
  allowFailure?: boolean;
  /** Prefix for error messages, e.g. the node's label. */
  label?: string;
  /** The command line to show in messages instead of the real one (e.g. without nsenter). */
  display?: string;
}

/** The outcome of a finished command. */
export interface RunResult {
  /** The command line, for messages. */
  command: string;
  /** Exit code; undefined when killed by a signal or not started. */
  exitCode: number | undefined;
  /** The signal that killed it, if any. */
  signal: string | undefined;
  stdout: string;
  stderr: string;
  /** True when the command did not exit with code 0. */
  failed: boolean;
}

/** A command that failed; the message holds the command line, the exit status and stderr. */
export class CommandError extends Error {
  /** The failed command's result. */
  readonly result: RunResult;
  constructor(result: RunResult, reason: string, cause?: unknown) {
    const stderr = result.stderr.trim();
    const stdout = result.stdout.trim();
    super(
      `${result.command}: ${reason}` +
        (stderr ? `\n--- stderr ---\n${stderr}` : '') +
        (stdout && !stderr ? `\n--- stdout ---\n${stdout}` : ''),
      cause === undefined ? undefined : { cause },
    );
    this.name = 'CommandError';
    this.result = result;
  }
}

/** Quotes a command line for messages. */
export function showCommand(cmd: string, args: readonly string[]): string {
  return [cmd, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** Runs a command to completion and returns its output; throws a {@link CommandError} (with stderr) on failure. */
export async function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const command = opts.display ?? (opts.label ? `[${opts.label}] ` : '') + showCommand(cmd, args);
  const r = await execa(cmd, args, {
    reject: false,
    timeout: opts.timeoutMs ?? 30_000,
    stdin: opts.input === undefined ? 'ignore' : 'pipe',
    ...(opts.input === undefined ? {} : { input: opts.input }),
    env: opts.env ?? {},
    stripFinalNewline: false,
  });
  const result: RunResult = {
    command,
    exitCode: r.exitCode,
    signal: r.signal,
    stdout: typeof r.stdout === 'string' ? r.stdout : '',
    stderr: typeof r.stderr === 'string' ? r.stderr : '',
    failed: r.failed,
  };
  if (r.failed && !opts.allowFailure) {
    const reason = r.timedOut
      ? `timed out after ${opts.timeoutMs ?? 30_000} ms`
      : r.signal
        ? `killed by ${r.signal}`
        : r.exitCode !== undefined
          ? `exited with code ${r.exitCode}`
          : `could not be started (${r.shortMessage})`;
    throw new CommandError(result, reason, r.cause);
  }
  return result;
}

/** Whether a command exists on PATH. */
export async function hasCommand(cmd: string): Promise<boolean> {
  const r = await run('sh', ['-c', 'command -v "$1"', 'sh', cmd], { allowFailure: true });
  return !r.failed;
}

/**
 * Throws (so the calling hook fails loudly, never skips) unless this process is root and every
 * listed command is installed; the message says how to install them.
 */
export async function requireTools(commands: readonly string[]): Promise<void> {
  const problems: string[] = [];
  if (process.getuid?.() !== 0) problems.push('these tests need root (network and mount namespaces)');
  const missing: string[] = [];
  for (const c of commands) if (!(await hasCommand(c))) missing.push(c);
  if (missing.length > 0) {
    problems.push(
      `missing commands: ${missing.join(', ')} (test/setup.sh installs them: wireguard-tools, wireguard-go, iproute2, iputils-ping, util-linux)`,
    );
  }
  if (problems.length > 0) throw new Error(`test environment not ready: ${problems.join('; ')}`);
}

// ---------------------------------------------------------------------------------------------
// Long-running processes

/** How a {@link TestProcess} ended. */
export interface ProcessExit {
  exitCode: number | undefined;
  signal: string | undefined;
}

/** A long-running child (inside a node or not) whose stdout and stderr are collected together. */
export class TestProcess {
  /** The command line, for messages. */
  readonly command: string;
  /** The child's pid (with nsenter it is the command itself, nsenter execs it). */
  readonly pid: number;
  /** Resolves when the child has exited. */
  readonly exited: Promise<ProcessExit>;
  private out = '';
  private done: ProcessExit | undefined;
  private readonly waiters = new Set<() => void>();
  private readonly child: ResultPromise;

  constructor(
    cmd: string,
    args: readonly string[],
    opts: { env?: Record<string, string>; label?: string; maxOutput?: number } = {},
  ) {
    this.command = (opts.label ? `[${opts.label}] ` : '') + showCommand(cmd, args);
    const max = opts.maxOutput ?? 1_000_000;
    this.child = execa(cmd, args, { reject: false, buffer: false, stdin: 'ignore', env: opts.env ?? {} });
    if (this.child.pid === undefined) {
      // execa reports spawn failures through the promise; pid is undefined then.
      this.pid = -1;
    } else {
      this.pid = this.child.pid;
    }
    const onData = (chunk: Buffer | string): void => {
      this.out += chunk.toString();
      if (this.out.length > max) this.out = this.out.slice(this.out.length - max);
      for (const w of this.waiters) w();
    };
    this.child.stdout?.setEncoding('utf8').on('data', onData);
    this.child.stderr?.setEncoding('utf8').on('data', onData);
    this.exited = this.child.then((r) => {
      this.done = { exitCode: r.exitCode, signal: r.signal };
      if (r.failed && r.exitCode === undefined && r.signal === undefined) this.out += `\n[${r.shortMessage}]`;
      for (const w of this.waiters) w();
      return this.done;
    });
  }

  /** Everything the child wrote to stdout and stderr so far (the last 1 MB). */
  output(): string {
    return this.out;
  }

  /** Whether the child is still running. */
  get running(): boolean {
    return this.done === undefined;
  }

  /**
   * Waits until the output matches `pattern` (checked against everything written so far) and
   * returns the match; throws with the output so far on timeout or when the child exits first.
   */
  async waitForOutput(pattern: RegExp | string, timeoutMs = 10_000): Promise<RegExpMatchArray> {
    const re = typeof pattern === 'string' ? new RegExp(pattern.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : pattern;
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const m = this.out.match(re);
        if (m) finish(() => resolve(m));
        else if (this.done) {
          finish(() =>
            reject(
              new Error(
                `${this.command} exited (${describeExit(this.done)}) before printing ${re}; output:\n${this.out}`,
              ),
            ),
          );
        }
      };
      const timer = setTimeout(() => {
        finish(() =>
          reject(new Error(`${this.command} did not print ${re} within ${timeoutMs} ms; output:\n${this.out}`)),
        );
      }, timeoutMs);
      const finish = (f: () => void): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        f();
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Sends `signal` (default SIGTERM), then SIGKILL after `graceMs`, and returns how the child ended. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 5_000): Promise<ProcessExit> {
    if (this.done) return this.done;
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Describes a process exit for messages. */
function describeExit(e: ProcessExit | undefined): string {
  if (!e) return 'still running';
  return e.signal ? `signal ${e.signal}` : `code ${String(e.exitCode)}`;
}

/** Starts a long-running command in the root namespaces. */
export function spawnProcess(
  cmd: string,
  args: readonly string[],
  opts: { env?: Record<string, string>; label?: string } = {},
): TestProcess {
  return new TestProcess(cmd, args, opts);
}

/** Waits `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
