/**
 * The command shells (ShellRunner) against the real /bin/sh: a command after its first run goes
 * through a shell and gives what a direct spawn gives (arguments byte for byte, stdout, stderr,
 * exit status, a missing program), busy shells or a command with input fall back to a direct
 * spawn, a timeout kills the command (the shell goes on), a killed shell is replaced, and no output
 * is left behind (a dead process's directories are removed).
 */
import assert from 'node:assert/strict';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExecaRunner, type CommandResult, type CommandRunner } from '../../../service/src/exec/runner.js';
import { ShellRunner } from '../../../service/src/exec/shell-runner.js';

/** The parent process of a command run by `runner` (the shell's pid, or this process's). */
async function parentOf(runner: CommandRunner): Promise<number> {
  const r = await runner.run('sh', ['-c', 'echo "$PPID"']);
  return Number(r.stdout.trim());
}

describe('integration: the command shell', function () {
  this.timeout(20_000);
  let runtime: string;
  let runner: ShellRunner;
  const saved = process.env.RUNTIME_DIRECTORY;

  before(() => {
    runtime = mkdtempSync(join(tmpdir(), 'wg-overlay-shell-test-'));
    process.env.RUNTIME_DIRECTORY = runtime;
    runner = new ShellRunner();
  });

  after(() => {
    if (saved === undefined) delete process.env.RUNTIME_DIRECTORY;
    else process.env.RUNTIME_DIRECTORY = saved;
    rmSync(runtime, { recursive: true, force: true });
  });

  it('runs a program directly the first time and in the shell after that', async () => {
    assert.equal(await parentOf(runner), process.pid);
    assert.notEqual(await parentOf(runner), process.pid);
  });

  it('gives what a direct spawn gives: arguments byte for byte, stdout, stderr and the exit status', async () => {
    const direct = new ExecaRunner();
    const awkward = ["it's", 'two words', 'a\nnewline', '$HOME', '`id`', '; rm -rf /', '*', '"q"', '\\', '-n', ''];
    const script = 'printf "<%s>" "$@"; printf "err:%s" "$1" >&2; exit 3';
    const args = ['-c', script, 'sh', ...awkward];
    await runner.run('sh', ['-c', 'true']); // sh has run once: what follows goes through the shell
    assert.notEqual(await parentOf(runner), process.pid);
    const viaShell = await runner.run('sh', args, { allowFailure: true });
    const viaSpawn = await direct.run('sh', args, { allowFailure: true });
    assert.deepEqual(viaShell, viaSpawn);
    assert.equal(viaShell.exitCode, 3);
    assert.equal(viaShell.stdout, awkward.map((a) => `<${a}>`).join(''));
    await assert.rejects(runner.run('sh', args), (err: Error) => {
      assert.match(err.message, /exit 3: err:it's$/);
      return true;
    });
  });

  it('reports a program that went missing as a direct spawn does', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wg-overlay-shell-prog-'));
    const prog = join(dir, 'prog');
    writeFileSync(prog, '#!/bin/sh\necho ran\n');
    chmodSync(prog, 0o755);
    try {
      assert.equal((await runner.run(prog, [])).stdout, 'ran\n');
      assert.equal((await runner.run(prog, [])).stdout, 'ran\n'); // in the shell
      rmSync(prog);
      const gone = await runner.run(prog, [], { allowFailure: true });
      const direct = await new ExecaRunner().run(prog, [], { allowFailure: true });
      assert.equal(gone.exitCode, -1);
      assert.equal(direct.exitCode, -1);
      await assert.rejects(runner.run(prog, []), /ENOENT/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('spawns directly while every shell is busy, and for a command with input', async () => {
    const slow = (): Promise<CommandResult> => runner.run('sh', ['-c', 'sleep 0.3; echo "$PPID"']);
    const [a, b, quick] = await Promise.all([
      slow(),
      slow(),
      (async () => {
        await new Promise((r) => setTimeout(r, 50));
        return runner.run('sh', ['-c', 'echo "$PPID"']);
      })(),
    ]);
    const shells = [Number(a.stdout), Number(b.stdout)];
    assert.ok(!shells.includes(process.pid) && shells[0] !== shells[1], 'two shells ran the slow commands');
    assert.equal(Number(quick.stdout), process.pid);
    const piped = await runner.run('sh', ['-c', 'cat; echo " $PPID"'], { input: 'in' });
    assert.equal(piped.stdout, `in ${process.pid}\n`);
  });

  it('kills a command that runs too long, and the shell goes on with the next one', async () => {
    const shell = await parentOf(runner);
    const pidFile = join(runtime, 'sleeper.pid');
    const t0 = Date.now();
    await assert.rejects(
      runner.run('sh', ['-c', `echo "$$" > ${pidFile}; exec sleep 5`], { timeoutMs: 300 }),
      /timed out/,
    );
    assert.ok(Date.now() - t0 < 2_000);
    const sleeper = Number(readFileSync(pidFile, 'utf8'));
    await new Promise((r) => setTimeout(r, 100));
    assert.throws(() => process.kill(sleeper, 0), /ESRCH/, 'the command is gone');
    // The killed command's late status is not taken for the next command's.
    const next = await runner.run('sh', ['-c', 'echo "next $PPID"; exit 4'], { allowFailure: true });
    assert.deepEqual([next.stdout, next.exitCode], [`next ${shell}\n`, 4]);
  });

  it('starts a new shell when its shell was killed', async () => {
    const shell = await parentOf(runner);
    process.kill(shell, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 100));
    const after = await parentOf(runner);
    assert.notEqual(after, shell);
    assert.notEqual(after, process.pid);
  });

  it('leaves no output behind in its directories', async () => {
    await runner.run('sh', ['-c', 'echo secret; echo secret >&2']);
    const dirs = readdirSync(runtime).filter((e) => e.startsWith(`shell-${process.pid}-`));
    assert.equal(dirs.length, 2, 'one directory per shell under RUNTIME_DIRECTORY');
    for (const dir of dirs) assert.deepEqual(readdirSync(join(runtime, dir)), []);
  });

  it("removes the directories of a process that is gone (its output with them), and no live process's", () => {
    const gone = join(runtime, 'shell-999999999-abc123');
    const live = join(runtime, 'shell-1-abc123'); // pid 1 runs (as another user's process, or this container's init)
    for (const d of [gone, live]) {
      mkdirSync(d);
      writeFileSync(join(d, 'out'), 'what a crashed daemon was reading');
    }
    const next = new ShellRunner();
    assert.ok(next, 'a second runner started');
    assert.equal(existsSync(gone), false);
    assert.equal(existsSync(live), true);
    assert.equal(readdirSync(runtime).filter((e) => e.startsWith(`shell-${process.pid}-`)).length, 4);
  });
});
