/**
 * A command runner that hands commands to long-lived `/bin/sh` co-processes, started while the
 * daemon is still small, so that a command costs a fork of a shell instead of a fork of the
 * daemon (whose fork copies the page tables of its whole heap: 3 ms of CPU at 170 MB resident and
 * 6 ms at 300 MB, against about 1 ms from a small process).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Logger } from '../log/logger.js';
import { pidAlive } from '../util/process.js';
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

/** The command in flight in a shell. */
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

/** Shells that may end without answering before commands are only spawned directly. */
const MAX_DEAD_SHELLS = 3;

/**
 * A directory for a shell's output files: the service's runtime directory (a tmpfs) when systemd
 * gives one, else the temporary directory (0700, named after this process, removed at exit). Those
 * of processes that are gone (a crash, kill -9) are removed first: one could hold the output of a
 * command that was running then.
 */
function outputDir(): string {
  const base = process.env.RUNTIME_DIRECTORY?.split(':')[0] || tmpdir();
  removeStaleDirs(base);
  const dir = mkdtempSync(join(base, `shell-${process.pid}-`));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Removes the shells' directories of processes that no longer run. */
function removeStaleDirs(base: string): void {
  let names: string[];
  try {
    names = readdirSync(base);
  } catch {
    return;
  }
  for (const name of names) {
    const pid = Number(/^shell-(\d+)-/.exec(name)?.[1]);
    if (!pid || pid === process.pid || pidAlive(pid)) continue;
    try {
      rmSync(join(base, name), { recursive: true, force: true });
    } catch {
      // another user's, or gone meanwhile
    }
  }
}

function empty(exitCode: number): CommandResult {
  return { stdout: '', stderr: '', exitCode };
}

/** One `/bin/sh` co-process running one command at a time, started again after it ends. */
class Shell {
  private child: ChildProcess | undefined;
  private pending: Pending | undefined;
  private seq = 0;
  private answered = false;

  /** `onDead`: the shell ended without answering any command (it cannot run here). */
  constructor(
    private readonly dir: string,
    private readonly onDead: () => void,
  ) {
    this.child = this.start();
  }

  /** True while a command runs. */
  get busy(): boolean {
    return this.pending !== undefined;
  }

  /** Runs `cmd args…` (stdin /dev/null), killing it after `timeoutMs`. */
  run(cmd: string, args: readonly string[], timeoutMs: number): Promise<Ended> {
    this.child ??= this.start();
    const shell = this.child;
    const q = (p: string): string => formatCommand(join(this.dir, p), []);
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
      const line = `${formatCommand(cmd, args)} </dev/null >${q('out')} 2>${q('err')} &`;
      shell.stdin!.write(`${line} echo "p ${seq} $!"; wait "$!"; echo "s ${seq} $?"\n`);
    });
  }

  private start(): ChildProcess {
    const child = spawn('/bin/sh', [], { stdio: ['pipe', 'pipe', 'ignore'] });
    this.answered = false;
    child.on('error', () => this.ended(child));
    child.on('exit', () => this.ended(child));
    child.stdin!.on('error', () => undefined); // reported through 'exit'
    createInterface({ input: child.stdout! }).on('line', (text) => this.answer(text));
    child.unref();
    for (const s of [child.stdin, child.stdout]) (s as unknown as { unref?: () => void }).unref?.();
    return child;
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
    const code = Number(m[3]);
    const result = { stdout: this.take('out'), stderr: this.take('err'), exitCode: code };
    if (code === NOT_FOUND && /not found/.test(result.stderr))
      p.resolve({ result: { ...result, exitCode: -1 }, failure: `spawn ${p.cmd} ENOENT` });
    else p.resolve({ result, failure: code === 0 ? undefined : `exit ${code}` });
  }

  /** An output file's text, removed at once: no command's output (`wg show … dump` holds the private key) stays behind. */
  private take(name: string): string {
    const path = join(this.dir, name);
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return '';
    } finally {
      rmSync(path, { force: true });
    }
  }

  /** The shell ended (killed from outside, or it could not start): the next command starts another. */
  private ended(child: ChildProcess): void {
    if (this.child !== child) return;
    this.child = undefined;
    if (!this.answered) this.onDead();
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
    if (this.child === shell) this.child = undefined;
    shell.kill('SIGKILL');
  }
}

/**
 * Runs commands without input in one of `size` shells; a command with input, one that comes while
 * every shell is busy, and a program's first run (so that a missing program fails as a direct
 * spawn does) are spawned directly. Each is logged at debug, as ExecaRunner logs.
 */
export class ShellRunner implements CommandRunner {
  private readonly shells: Shell[] = [];
  private deadShells = 0;
  /** Programs that have run once (directly). */
  private readonly found = new Set<string>();
  private readonly direct: ExecaRunner;

  constructor(
    private readonly log?: Logger,
    size = 2,
  ) {
    this.direct = new ExecaRunner(log);
    try {
      for (let i = 0; i < size; i += 1) this.shells.push(new Shell(outputDir(), () => (this.deadShells += 1)));
    } catch (err) {
      this.log?.debug(`command shells not started (commands are spawned directly): ${String(err)}`);
    }
  }

  async run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<CommandResult> {
    const shell = this.shells.find((s) => !s.busy);
    if (!shell || opts.input !== undefined || !this.found.has(cmd) || this.deadShells >= MAX_DEAD_SHELLS) {
      const r = await this.direct.run(cmd, args, opts);
      this.found.add(cmd);
      return r;
    }
    const line = briefCommand(cmd, args);
    this.log?.debug(`exec: ${line}`);
    return finishCommand(line, await shell.run(cmd, args, opts.timeoutMs ?? 30_000), opts);
  }
}

/**
 * The real host's runners, logging to `log` (the commands that change the host) or not (reads),
 * each through long-lived shells: a fork of a small process per command, not of the daemon.
 */
export function hostRunners(log: Logger): HostRunners {
  return { log, runner: new ShellRunner(log), quietRunner: new ShellRunner(undefined, 1) };
}
