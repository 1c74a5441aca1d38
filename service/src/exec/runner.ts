/**
 * The one way the daemon runs `wg`, `ip` and friends: a small CommandRunner interface with an
 * execa-backed implementation that logs each command before it runs, and a recording fake so
 * tests can assert the exact commands a reconcile would execute.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type { Logger } from '../log/logger.js';

/** What a command printed and how it ended. */
export interface CommandResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** Options for one command. */
export interface RunOptions {
  /** Text fed to stdin; never logged. (Not for `wg … /dev/stdin`: Node's stdin pipes are sockets, which wg cannot fopen.) */
  input?: string;
  /** Resolve with the result instead of throwing on a non-zero exit. */
  allowFailure?: boolean;
  /** Give up after this many milliseconds (default 30 s). */
  timeoutMs?: number;
}

/** Runs commands; the seam between the daemon and the host. */
export interface CommandRunner {
  /** Runs `cmd args…`; throws CommandError on failure unless `allowFailure`. */
  run(cmd: string, args: readonly string[], opts?: RunOptions): Promise<CommandResult>;
}

/** A command that failed, with the command line and its stderr in the message. */
export class CommandError extends Error {
  readonly result: CommandResult | undefined;

  constructor(message: string, result?: CommandResult, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CommandError';
    this.result = result;
  }
}

/** Formats a command line for logs. */
export function formatCommand(cmd: string, args: readonly string[]): string {
  return [cmd, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** Longest command text quoted in a log line or an error; longer ones are cut with a count. */
const MAX_COMMAND_TEXT = 160;

/** A command line for errors and logs, cut to a bounded length (`wg set` can carry thousands of peers). */
export function briefCommand(cmd: string, args: readonly string[]): string {
  const full = formatCommand(cmd, args);
  if (full.length <= MAX_COMMAND_TEXT) return full;
  return `${full.slice(0, MAX_COMMAND_TEXT)}… (${args.length} arguments)`;
}

/** How a command ended, whichever way it was run. */
export interface Ended {
  result: CommandResult;
  /** Why it failed (non-zero exit, signal, timeout, could not start); undefined when it succeeded. */
  failure: string | undefined;
}

/**
 * Runs a command without input on a plain child process: the hot path of every apply (one `wg set`
 * per Node event), where execa's machinery costs about three times the CPU of the spawn itself.
 */
function spawnPlain(cmd: string, args: readonly string[], timeoutMs: number): Promise<Ended> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const end = (exitCode: number, failure: string | undefined): void => {
      clearTimeout(timer);
      const result = {
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        exitCode,
      };
      resolve({ result, failure });
    };
    child.on('error', (e) => end(-1, e.message));
    child.on('close', (code, signal) => {
      if (timedOut) end(code ?? -1, 'timed out');
      else if (signal) end(-1, `killed by ${signal}`);
      else end(code ?? -1, code === 0 ? undefined : `exit ${code}`);
    });
  });
}

/** Runs a command with input through execa (which feeds stdin and ends it reliably). */
async function runWithExeca(cmd: string, args: readonly string[], opts: RunOptions): Promise<Ended> {
  const res = await execa(cmd, args, {
    input: opts.input,
    reject: false,
    timeout: opts.timeoutMs ?? 30_000,
    stripFinalNewline: false,
  });
  const result: CommandResult = { stdout: res.stdout ?? '', stderr: res.stderr ?? '', exitCode: res.exitCode ?? -1 };
  if (!res.failed) return { result, failure: undefined };
  const failure = res.timedOut
    ? 'timed out'
    : res.exitCode === undefined
      ? (res.shortMessage ?? 'failed')
      : `exit ${res.exitCode}`;
  return { result, failure };
}

/** Runs commands on the host (execa when there is input, a plain child process otherwise), logging each at debug level before it runs. */
export class ExecaRunner implements CommandRunner {
  constructor(private readonly log?: Logger) {
    // Commands' output is parsed: keep it in the C locale.
    process.env.LC_ALL = 'C';
  }

  async run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<CommandResult> {
    const line = briefCommand(cmd, args);
    this.log?.debug(`exec: ${line}`);
    let ended: Ended;
    try {
      ended =
        opts.input === undefined
          ? await spawnPlain(cmd, args, opts.timeoutMs ?? 30_000)
          : await runWithExeca(cmd, args, opts);
    } catch (cause) {
      throw new CommandError(`running ${line}`, undefined, { cause });
    }
    return finishCommand(line, ended, opts);
  }
}

/** A command's result, or the CommandError (command line and stderr) for a failure not allowed by `opts`. */
export function finishCommand(line: string, ended: Ended, opts: RunOptions): CommandResult {
  const { result, failure } = ended;
  if (failure && !opts.allowFailure)
    throw new CommandError(`${line}: ${failure}${result.stderr.trim() ? `: ${result.stderr.trim()}` : ''}`, result);
  return result;
}

/** A fake runner for tests: records every command and answers from a handler. */
export class RecordingRunner implements CommandRunner {
  readonly calls: string[] = [];

  constructor(
    private readonly handler: (
      cmd: string,
      args: readonly string[],
      opts: RunOptions,
    ) => Partial<CommandResult> | Promise<Partial<CommandResult>> = () => ({}),
  ) {}

  async run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<CommandResult> {
    this.calls.push(formatCommand(cmd, args));
    const r = await this.handler(cmd, args, opts);
    const result = { stdout: r.stdout ?? '', stderr: r.stderr ?? '', exitCode: r.exitCode ?? 0 };
    if (result.exitCode !== 0 && !opts.allowFailure)
      throw new CommandError(`${briefCommand(cmd, args)}: exit ${result.exitCode}: ${result.stderr}`, result);
    return result;
  }
}

/**
 * Runs `fn` with the path of a private temporary file (directory 0700, file 0600) holding
 * `content` — how secrets such as keys reach `wg setconf`/`wg set`, never on a command line —
 * and removes it afterwards.
 */
export async function withSecretFile<T>(content: string, fn: (path: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'wg-overlay-'));
  try {
    const path = join(dir, 'secret');
    await writeFile(path, content, { mode: 0o600 });
    return await fn(path);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** How a process runs commands on its host: `runner` for what changes the host (each logged at debug), `quietRunner` for reads (not logged). */
export interface HostRunners {
  log: Logger;
  /** Runs the commands that change the host (each logged at debug). */
  runner: CommandRunner;
  /** Runs reads, such as a metrics scrape's or a status' (not logged). */
  quietRunner: CommandRunner;
}
