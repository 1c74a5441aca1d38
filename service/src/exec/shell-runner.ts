/**
 * A command runner that hands commands to one long-lived `/bin/sh` co-process, started while the
 * daemon is still small, so that a command costs a fork of the shell instead of a fork of the
 * daemon (whose fork copies the page tables of its whole heap: 3 ms of CPU at 170 MB resident and
 * 6 ms at 300 MB, against about 1 ms from a small process).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Logger } from '../log/logger.js';
import {
  briefCommand,
  ExecaRunner,
  finishCommand,
  formatCommand,
  type CommandResult,
  type CommandRunner,
  type Ended,
  type HostRunners,
  type RunOptions,
} from './runner.js';

/** The command in flight in the shell. */
interface Pending {
  /** Its number: the shell's answers name it, so a late answer is never taken for another's. */
  seq: number;
  cmd: string;
  /** The command's process (the shell reports it first). */
  pid?: number;
  resolve(ended: Ended): void;
  timer: NodeJS.Timeout;
}

/** A shell's exit status for a command it could not find (POSIX). */
const NOT_FOUND = 127;

/**
 * The directory for the shell's output files: the service's runtime directory (a tmpfs) when
 * systemd gives one, else the temporary directory (0700, removed at exit).
 */
function outputDir(): string {
  const base = process.env.RUNTIME_DIRECTORY?.split(':')[0] || tmpdir();
  const dir = mkdtempSync(join(base, 'shell-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Runs commands without input in the shell, one at a time; a command with input, one that comes
 * while the shell is busy, and a command's first run (so that a missing program fails as a direct
 * spawn does) are spawned directly. Each is logged at debug, as ExecaRunner logs.
 */
export class ShellRunner implements CommandRunner {
  private shell: ChildProcess | undefined;
  private pending: Pending | undefined;
  private dir: string | undefined;
  private seq = 0;
  /** Shells that ended without answering a command; after three, every command is spawned directly. */
  private deadShells = 0;
  private answered = false;
  /** Programs that have run once (directly). */
  private readonly found = new Set<string>();
  private readonly direct: ExecaRunner;

  constructor(private readonly log?: Logger) {
    this.direct = new ExecaRunner(log);
    this.shell = this.start();
  }

  async run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<CommandResult> {
    if (opts.input !== undefined || this.pending || !this.found.has(cmd) || this.deadShells >= 3) {
      const r = await this.direct.run(cmd, args, opts);
      this.found.add(cmd);
      return r;
    }
    const line = briefCommand(cmd, args);
    this.log?.debug(`exec: ${line}`);
    const ended = await this.inShell(cmd, args, opts.timeoutMs ?? 30_000);
    return finishCommand(line, ended, opts);
  }

  private start(): ChildProcess | undefined {
    try {
      this.dir ??= outputDir();
      const child = spawn('/bin/sh', [], { stdio: ['pipe', 'pipe', 'ignore'] });
      this.answered = false;
      child.on('error', () => this.ended(child));
      child.on('exit', () => this.ended(child));
      child.stdin!.on('error', () => undefined); // reported through 'exit'
      createInterface({ input: child.stdout! }).on('line', (text) => this.answer(text));
      child.unref();
      for (const s of [child.stdin, child.stdout]) (s as unknown as { unref?: () => void }).unref?.();
      return child;
    } catch (err) {
      this.log?.debug(`command shell not started (commands are spawned directly): ${String(err)}`);
      return undefined;
    }
  }

  private inShell(cmd: string, args: readonly string[], timeoutMs: number): Promise<Ended> {
    this.shell ??= this.start();
    const shell = this.shell;
    const dir = this.dir;
    if (!shell || !dir) return Promise.resolve({ result: empty(-1), failure: 'the command shell could not start' });
    const q = (p: string): string => formatCommand(join(dir, p), []);
    return new Promise((resolve) => {
      const seq = (this.seq += 1);
      const timer = setTimeout(() => {
        if (this.pending?.seq !== seq) return;
        const pid = this.pending.pid;
        this.pending = undefined;
        this.killCommand(shell, pid);
        resolve({ result: empty(-1), failure: 'timed out' });
      }, timeoutMs);
      this.pending = { seq, cmd, resolve, timer };
      // In the background, so that its pid is known (a timeout kills it, not the shell).
      const run = `${formatCommand(cmd, args)} </dev/null >${q('out')} 2>${q('err')} &`;
      shell.stdin!.write(`${run} echo "p ${seq} $!"; wait "$!"; echo "s ${seq} $?"\n`);
    });
  }

  /** The shell reported the pid (`p seq pid`) or the exit status (`s seq status`) of a command. */
  private answer(text: string): void {
    const m = /^([ps]) (\d+) (\d+)$/.exec(text);
    const p = this.pending;
    if (!m || !p || Number(m[2]) !== p.seq) return;
    this.answered = true;
    if (m[1] === 'p') {
      p.pid = Number(m[3]);
      return;
    }
    this.pending = undefined;
    clearTimeout(p.timer);
    // Read and removed at once: no command's output (`wg show … dump` holds the private key) stays behind.
    const read = (name: string): string => {
      const path = join(this.dir!, name);
      try {
        return readFileSync(path, 'utf8');
      } catch {
        return '';
      } finally {
        rmSync(path, { force: true });
      }
    };
    const code = Number(m[3]);
    const result = { stdout: read('out'), stderr: read('err'), exitCode: code };
    if (code === NOT_FOUND && /not found/.test(result.stderr))
      p.resolve({ result: { ...result, exitCode: -1 }, failure: `spawn ${p.cmd} ENOENT` });
    else p.resolve({ result, failure: code === 0 ? undefined : `exit ${code}` });
  }

  /** The shell ended (killed from outside, or it could not start): the next command starts another. */
  private ended(child: ChildProcess): void {
    if (this.shell !== child) return;
    this.shell = undefined;
    if (!this.answered) this.deadShells += 1;
    const p = this.pending;
    this.pending = undefined;
    if (p) {
      clearTimeout(p.timer);
      p.resolve({ result: empty(-1), failure: 'the command shell ended' });
    }
  }

  /** Kills a command that ran too long (the shell, if its pid is not known yet). */
  private killCommand(shell: ChildProcess, pid: number | undefined): void {
    try {
      if (pid) return void process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
    if (this.shell === shell) this.shell = undefined;
    shell.kill('SIGKILL');
  }
}

function empty(exitCode: number): CommandResult {
  return { stdout: '', stderr: '', exitCode };
}

/**
 * The real host's runners, logging to `log` (the commands that change the host) or not (reads),
 * each through a long-lived shell: a fork of a small process per command, not of the daemon.
 */
export function hostRunners(log: Logger): HostRunners {
  return { log, runner: new ShellRunner(log), quietRunner: new ShellRunner() };
}
