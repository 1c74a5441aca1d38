/**
 * Booted-systemd test machines: Debian 12 roots made with debootstrap (only Debian's
 * repositories), cached under the OS temp dir by a content hash so later runs in the same session
 * boot in seconds, and containers booted from them with systemd-nspawn (`-b --register=no
 * --keep-unit --console=pipe`, CAP_NET_ADMIN, /dev/net/tun) inside a test network namespace.
 * Every container runs on its own overlayfs upper layer, so the cached roots stay pristine.
 *
 * Layers: `debianRoot()` is debootstrap minbase + systemd + dbus + iproute2, `apt-get update`
 * done, and the .debs of `prefetch` packages downloaded (not installed) into apt's cache, so
 * `apt-get install ./pkg.deb` inside a container without internet still resolves and installs
 * the real dependencies. `installedLayer()` is an upper layer with packages installed on top.
 *
 * Names carry this process's pid (`wgs-<pid>-<n>` dirs), so a later run can remove what a killed
 * run left behind (`cleanupStaleContainers`).
 */
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { BootedSystem } from './booted.js';
import { run, sleep, spawnProcess, type RunOptions, type RunResult, type TestProcess } from '../process.js';
import { pidAlive } from '../../../service/src/util/process.js';

export type { JournalEntry } from './booted.js';

/** Bump to invalidate every cached root (when the way roots are prepared changes). */
const CACHE_FORMAT = 3;

/** The Debian release the roots are made of. */
export const SUITE = 'bookworm';

/** Debian's own mirror (the only one used). */
export const MIRROR = 'http://deb.debian.org/debian';

/** Where cached roots live: survives within a session, CI starts without it. */
export const CACHE_DIR = join(tmpdir(), 'wg-overlay-nspawn-cache');

/** Packages debootstrap adds to minbase: a bootable systemd with D-Bus and iproute2. */
const BASE_INCLUDE = ['systemd', 'systemd-sysv', 'dbus', 'iproute2'];

const SOURCES_LIST = [
  `deb ${MIRROR} ${SUITE} main`,
  `deb ${MIRROR} ${SUITE}-updates main`,
  `deb http://deb.debian.org/debian-security ${SUITE}-security main`,
  '',
].join('\n');

/** Runs `cmd` inside `root` without booting (shares the host network: for apt downloads). */
export async function inRoot(root: string, cmd: string[], opts: RunOptions = {}): Promise<RunResult> {
  return run(
    'systemd-nspawn',
    ['-q', '--register=no', '--keep-unit', '--pipe', '-D', root, '--setenv=DEBIAN_FRONTEND=noninteractive', ...cmd],
    {
      timeoutMs: 15 * 60_000,
      ...opts,
      label: opts.label ?? `nspawn ${root}`,
    },
  );
}

/** A short content hash of `parts` (JSON), the key of a cached build. */
export function contentHash(parts: unknown): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 16);
}

/**
 * Builds the cache dir `final` with `make(tmpDir)` unless it is complete already; concurrent
 * builders race, the first rename wins. Returns `final`.
 */
export async function cachedBuild(final: string, make: (dir: string) => Promise<void>): Promise<string> {
  if (existsSync(join(final, '.complete'))) return final;
  await mkdir(CACHE_DIR, { recursive: true });
  // Half-built layers of runs that were killed.
  for (const entry of await readdir(CACHE_DIR)) {
    const m = /\.tmp-(\d+)$/.exec(entry);
    if (!m || Number(m[1]) === process.pid || pidAlive(Number(m[1]))) continue;
    await run('umount', ['-l', join(CACHE_DIR, entry, 'merged')], { allowFailure: true });
    await rm(join(CACHE_DIR, entry), { recursive: true, force: true });
  }
  const tmp = `${final}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  try {
    await make(tmp);
    await writeFile(join(tmp, '.complete'), new Date().toISOString() + '\n');
    try {
      await rename(tmp, final);
    } catch {
      // Another run finished the same layer first: use theirs.
      if (!existsSync(join(final, '.complete'))) throw new Error(`cannot move ${tmp} to ${final}`);
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return final;
}

/** Options of {@link debianRoot}. */
export interface DebianRootOptions {
  /** Packages whose .debs (with their dependencies) are downloaded into apt's cache, not installed. */
  prefetch?: string[];
}

/**
 * A cached Debian 12 root (minbase + systemd + dbus + iproute2, only Debian's repositories) ready
 * to boot: no /etc/hostname (the container's hostname is its machine name), apt's timers masked
 * (they would take the dpkg lock in the middle of a test). Returns the root directory.
 */
export async function debianRoot(opts: DebianRootOptions = {}): Promise<string> {
  const prefetch = [...(opts.prefetch ?? [])].sort();
  const key = contentHash({ CACHE_FORMAT, SUITE, MIRROR, BASE_INCLUDE, SOURCES_LIST, prefetch });
  const dir = await cachedBuild(join(CACHE_DIR, `debian-${SUITE}-${key}`), async (tmp) => {
    const root = join(tmp, 'root');
    await run('debootstrap', ['--variant=minbase', `--include=${BASE_INCLUDE.join(',')}`, SUITE, root, MIRROR], {
      timeoutMs: 15 * 60_000,
      label: 'debootstrap',
    });
    await writeFile(join(root, 'etc/apt/sources.list'), SOURCES_LIST);
    await rm(join(root, 'etc/hostname'), { force: true });
    // An empty machine-id makes systemd-nspawn hand each container a fresh one.
    await writeFile(join(root, 'etc/machine-id'), '');
    await inRoot(root, [
      'systemctl',
      'mask',
      'apt-daily.timer',
      'apt-daily-upgrade.timer',
      'e2scrub_all.timer',
      'fstrim.timer',
    ]);
    await inRoot(root, ['apt-get', '-q', 'update']);
    await inRoot(root, ['apt-get', 'clean']);
    if (prefetch.length > 0) {
      await inRoot(root, ['apt-get', '-q', 'install', '-y', '--download-only', '--no-install-recommends', ...prefetch]);
    }
  });
  return join(dir, 'root');
}

/** Options of {@link installedLayer}. */
export interface InstalledLayerOptions {
  /** Files written into the root before the packages are installed (e.g. configuration their scripts read), by absolute path. */
  files?: Record<string, { data: string; mode?: number }>;
  /** Packages downloaded into apt's cache after the install (not installed), for an install later without network. */
  prefetch?: string[];
}

/**
 * An overlay upper layer on top of `lower` with `packages` installed (for containers that only
 * need the dependencies in place, e.g. several mesh nodes); cached like the roots. Returns the
 * list of lower dirs for {@link NspawnContainer.boot}, top first.
 */
export async function installedLayer(
  lower: string,
  packages: string[],
  opts: InstalledLayerOptions = {},
): Promise<string[]> {
  const pkgs = [...packages].sort();
  const files = Object.entries(opts.files ?? {}).sort(([a], [b]) => (a < b ? -1 : 1));
  const prefetch = [...(opts.prefetch ?? [])].sort();
  // Keys of layers made without options stay as they were (layers cached by earlier runs stay valid).
  const extra = files.length > 0 || prefetch.length > 0 ? { files, prefetch } : {};
  const key = contentHash({ CACHE_FORMAT, lower, pkgs, ...extra });
  const dir = await cachedBuild(join(CACHE_DIR, `layer-${key}`), async (tmp) => {
    const upper = join(tmp, 'upper');
    const work = join(tmp, 'work');
    const merged = join(tmp, 'merged');
    await mkdir(upper);
    await mkdir(work);
    await mkdir(merged);
    await run('mount', [
      '-t',
      'overlay',
      'wgs-layer',
      '-o',
      `lowerdir=${lower},upperdir=${upper},workdir=${work}`,
      merged,
    ]);
    try {
      for (const [path, f] of files) {
        await mkdir(dirname(join(merged, path)), { recursive: true });
        await writeFile(join(merged, path), f.data, { mode: f.mode ?? 0o644 });
      }
      await inRoot(merged, ['apt-get', '-q', 'install', '-y', '--no-install-recommends', ...pkgs]);
      await inRoot(merged, ['apt-get', 'clean']);
      if (prefetch.length > 0)
        await inRoot(merged, [
          'apt-get',
          '-q',
          'install',
          '-y',
          '--download-only',
          '--no-install-recommends',
          ...prefetch,
        ]);
    } finally {
      await run('umount', [merged]);
    }
    await rm(work, { recursive: true, force: true });
  });
  return [join(dir, 'upper'), lower];
}

let counter = 0;

/**
 * A throwaway root: an overlay over read-only layers that is never booted. Commands run in it
 * with a non-booted systemd-nspawn (no systemd as PID 1, like a chroot or an image build) and
 * the host's network.
 */
export class ScratchRoot {
  /** The merged root, as seen from the host. */
  readonly root: string;
  private readonly dir: string;
  private removed = false;

  private constructor(dir: string, root: string) {
    this.dir = dir;
    this.root = root;
  }

  /** Mounts a fresh overlay over `layers` (top first). */
  static async create(layers: string[]): Promise<ScratchRoot> {
    await cleanupStaleContainers();
    installExitHook();
    counter += 1;
    const dir = join(tmpdir(), `wgs-${process.pid}-${counter}`);
    const root = join(dir, 'root');
    await mkdir(join(dir, 'upper'), { recursive: true });
    await mkdir(join(dir, 'work'));
    await mkdir(root);
    await run('mount', [
      '-t',
      'overlay',
      `wgs-${process.pid}-${counter}`,
      '-o',
      `lowerdir=${layers.join(':')},upperdir=${join(dir, 'upper')},workdir=${join(dir, 'work')}`,
      root,
    ]);
    liveMounts.add(root);
    return new ScratchRoot(dir, root);
  }

  /** Runs a command inside (non-booted systemd-nspawn). */
  exec(cmd: string[], opts: RunOptions = {}): Promise<RunResult> {
    return inRoot(this.root, cmd, opts);
  }

  /** The host path of a path inside. */
  path(p: string): string {
    return join(this.root, p);
  }

  /** Unmounts and deletes it. */
  async remove(): Promise<void> {
    if (this.removed) return;
    this.removed = true;
    await run('umount', [this.root], { allowFailure: true });
    liveMounts.delete(this.root);
    await rm(this.dir, { recursive: true, force: true });
  }
}

/**
 * A /dev/net/tun device node (10:200) with the mode udev gives it on every normal host, 0666, for
 * the containers: wireguard-go started by wg-quick@ as the unprivileged user wg-overlay opens it.
 * The machines here have no udev and a 0600 node, which is not changed; the containers get this
 * node (the same device) bound in instead.
 */
async function tunNode(): Promise<string> {
  const node = join(CACHE_DIR, 'dev-net-tun-0666');
  await mkdir(CACHE_DIR, { recursive: true });
  if (!existsSync(node)) {
    const tmp = `${node}.tmp-${process.pid}`;
    await rm(tmp, { force: true });
    await run('mknod', ['-m', '0666', tmp, 'c', '10', '200']);
    await rename(tmp, node);
  }
  return node;
}

/** Options of {@link NspawnContainer.boot}. */
export interface BootOptions {
  /** Machine name; also the container's hostname (so, by default, its Kubernetes Node name). */
  name: string;
  /** Read-only layers, top first (e.g. from {@link installedLayer}, or `[debianRoot()]`). */
  layers: string[];
  /** Network namespace to boot in (`ip netns` name), e.g. a TestNode's. */
  netns: string;
}

/** A booted systemd container; commands run inside with `nsenter -t <its PID 1> -a` (systemctl and journal helpers from {@link BootedSystem}). */
export class NspawnContainer extends BootedSystem {
  /** Machine name and hostname. */
  readonly name: string;
  /** The container's root as seen from the host (the overlay mount). */
  readonly root: string;
  /** Host pid of the container's PID 1 (systemd). */
  readonly pid: number;
  private readonly dir: string;
  private readonly nspawn: TestProcess;
  private stopped = false;

  private constructor(name: string, dir: string, root: string, nspawn: TestProcess, pid: number) {
    super();
    this.name = name;
    this.dir = dir;
    this.root = root;
    this.nspawn = nspawn;
    this.pid = pid;
  }

  /** Mounts a fresh overlay over the layers, boots it, and waits until systemd is up. */
  static async boot(opts: BootOptions): Promise<NspawnContainer> {
    await cleanupStaleContainers();
    installExitHook();
    counter += 1;
    const dir = join(tmpdir(), `wgs-${process.pid}-${counter}`);
    const upper = join(dir, 'upper');
    const root = join(dir, 'root');
    await mkdir(upper, { recursive: true });
    await mkdir(join(dir, 'work'));
    await mkdir(root);
    await run('mount', [
      '-t',
      'overlay',
      `wgs-${process.pid}-${counter}`,
      '-o',
      `lowerdir=${opts.layers.join(':')},upperdir=${upper},workdir=${join(dir, 'work')}`,
      root,
    ]);
    liveMounts.add(root);
    const tun = await tunNode();
    const nspawn = spawnProcess(
      'systemd-nspawn',
      [
        '-D',
        root,
        '-b',
        '-M',
        opts.name,
        '--register=no',
        '--keep-unit',
        '--console=pipe',
        `--network-namespace-path=/run/netns/${opts.netns}`,
        '--capability=CAP_NET_ADMIN',
        `--bind=${tun}:/dev/net/tun`,
      ],
      { label: `nspawn ${opts.name}` },
    );
    let pid: number;
    try {
      pid = await findContainerInit(nspawn);
    } catch (err) {
      await nspawn.stop('SIGKILL', 0);
      await run('umount', [root], { allowFailure: true });
      liveMounts.delete(root);
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
    liveInits.add(pid);
    const c = new NspawnContainer(opts.name, dir, root, nspawn, pid);
    try {
      // Until systemd has opened its private socket, systemctl cannot connect: retry then.
      const deadline = Date.now() + 90_000;
      let state = await c.exec('systemctl', ['is-system-running', '--wait'], { allowFailure: true, timeoutMs: 90_000 });
      while (
        (/Failed to connect to bus/.test(state.stderr) || state.stdout.trim() === 'offline') &&
        Date.now() < deadline
      ) {
        await sleep(100);
        state = await c.exec('systemctl', ['is-system-running', '--wait'], { allowFailure: true, timeoutMs: 90_000 });
      }
      if (!['running', 'degraded'].includes(state.stdout.trim())) {
        throw new Error(
          `container ${opts.name}: systemd did not come up (${state.stdout.trim() || state.stderr.trim()}); console:\n${nspawn.output()}`,
        );
      }
    } catch (err) {
      await c.stop();
      throw err;
    }
    return c;
  }

  /** Runs a command inside the container (all its namespaces) to completion. */
  exec(cmd: string, args: readonly string[] = [], opts: RunOptions = {}): Promise<RunResult> {
    if (this.stopped) throw new Error(`container ${this.name} is stopped`);
    return run(
      'nsenter',
      [
        '-t',
        String(this.pid),
        '-a',
        '--',
        'env',
        '-i',
        'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        'LANG=C.UTF-8',
        ...Object.entries(opts.env ?? {}).map(([k, v]) => `${k}=${v}`),
        cmd,
        ...args,
      ],
      {
        timeoutMs: 120_000,
        ...opts,
        env: {},
        display: `[${this.name}] ${[cmd, ...args].join(' ')}`,
      },
    );
  }

  /** The host path of a path inside the container. */
  path(p: string): string {
    if (!p.startsWith('/')) throw new Error(`NspawnContainer.path needs an absolute path, got ${p}`);
    return join(this.root, p);
  }

  /** Writes a file into the container (through the overlay mount). */
  async writeFile(p: string, data: string | Buffer, mode = 0o644): Promise<void> {
    await mkdir(dirname(this.path(p)), { recursive: true });
    await writeFile(this.path(p), data, { mode });
    await run('chmod', [mode.toString(8), this.path(p)]);
  }

  /** Powers the container off (SIGTERM to systemd-nspawn), then unmounts and removes its layer. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.nspawn.running) {
      // systemd-nspawn turns SIGTERM into a clean poweroff of the container.
      await this.nspawn.stop('SIGTERM', 20_000);
    }
    try {
      process.kill(this.pid, 'SIGKILL');
    } catch {
      // the container is gone, as it should be
    }
    liveInits.delete(this.pid);
    await run('umount', [this.root], { allowFailure: true });
    const still = await run('mountpoint', ['-q', this.root], { allowFailure: true });
    if (!still.failed) await run('umount', ['-l', this.root], { allowFailure: true });
    liveMounts.delete(this.root);
    await rm(this.dir, { recursive: true, force: true });
  }

  /** The console output of the container so far (for failure messages). */
  console(): string {
    return this.nspawn.output();
  }
}

/** Finds the container's PID 1 among systemd-nspawn's descendants (NSpid ends in 1). */
async function findContainerInit(nspawn: TestProcess): Promise<number> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (!nspawn.running) throw new Error(`systemd-nspawn exited before booting:\n${nspawn.output()}`);
    const queue = [nspawn.pid];
    const seen = new Set<number>();
    while (queue.length > 0) {
      const p = queue.shift()!;
      if (seen.has(p)) continue;
      seen.add(p);
      const status = await readFile(`/proc/${p}/status`, 'utf8').catch(() => '');
      const nspid = /^NSpid:\s+(.+)$/m.exec(status)?.[1]?.trim().split(/\s+/) ?? [];
      // PID 1 of the container, once it has exec'd systemd (before that it is nspawn's own child).
      if (p !== nspawn.pid && nspid.length > 1 && nspid[nspid.length - 1] === '1' && /^Name:\s+systemd$/m.test(status))
        return p;
      const tasks = await readdir(`/proc/${p}/task`).catch(() => [] as string[]);
      for (const t of tasks) {
        const children = await readFile(`/proc/${p}/task/${t}/children`, 'utf8').catch(() => '');
        for (const c of children.split(/\s+/).filter(Boolean)) queue.push(Number(c));
      }
    }
    await sleep(50);
  }
  throw new Error(`no container init below systemd-nspawn (pid ${nspawn.pid}) within 30 s:\n${nspawn.output()}`);
}

const liveMounts = new Set<string>();
const liveInits = new Set<number>();
let exitHookInstalled = false;

/** At exit, kills containers still running (their PID 1: the whole container goes) and unmounts their overlays. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const pid of liveInits) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const m of liveMounts) spawnSync('umount', ['-l', m], { stdio: 'ignore' });
  });
}

let staleDone: Promise<void> | undefined;

/** Unmounts and deletes the container dirs of earlier runs whose process is gone (once per process). */
export function cleanupStaleContainers(): Promise<void> {
  staleDone ??= (async () => {
    for (const entry of await readdir(tmpdir()).catch(() => [] as string[])) {
      const m = /^wgs-(\d+)-\d+$/.exec(entry);
      if (!m || Number(m[1]) === process.pid || pidAlive(Number(m[1]))) continue;
      // Its containers died with its network namespaces (netns.ts cleans those up); the
      // overlays may still be mounted.
      const dir = join(tmpdir(), entry);
      const root = join(dir, 'root');
      await run('umount', ['-l', root], { allowFailure: true });
      await rm(dir, { recursive: true, force: true });
    }
  })();
  return staleDone;
}

// ---------------------------------------------------------------------------------------------
// Packages

/** Paths of a built .deb and .rpm. */
export interface BuiltPackages {
  version: string;
  deb: string;
  rpm: string;
}

/** Builds both packages with the project's one build command (packaging/build.sh; cwd = the repository). */
export async function buildPackages(targetDir: string, version?: string): Promise<BuiltPackages> {
  const args = ['packaging/build.sh', '--target', targetDir];
  if (version) args.push('--version', version);
  const r = await run('bash', args, { timeoutMs: 5 * 60_000, label: 'build' });
  const files = r.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const deb = files.find((f) => f.endsWith('.deb'));
  const rpm = files.find((f) => f.endsWith('.rpm'));
  if (!deb || !rpm) throw new Error(`packaging/build.sh did not print a .deb and an .rpm:\n${r.stdout}\n${r.stderr}`);
  const v = /_([^_]+)-[^_-]+_[^_]+\.deb$/.exec(deb)?.[1] ?? '';
  return { version: v, deb, rpm };
}

/**
 * The commit whose packages were the last to run the daemon as root (0.1): upgrades from it are
 * tested (test/system/upgrade.test.ts).
 */
export const ROOT_RUNNING_COMMIT = '260f3442eb5f727f13bc548e3cc9c1c5d55d6df4';

/**
 * Builds the packages of an earlier commit: its tree (`git archive`) in a temp dir, with this
 * checkout's node_modules linked in (the build tools), packaged by that commit's own
 * packaging/build.sh, as `version`.
 */
export async function buildPackagesAtCommit(
  commit: string,
  targetDir: string,
  version: string,
): Promise<BuiltPackages> {
  const has = await run('git', ['cat-file', '-e', `${commit}^{commit}`], { allowFailure: true });
  if (has.failed)
    throw new Error(
      `commit ${commit} is not in this clone (a shallow checkout? fetch the full history): it is needed to build the earlier package`,
    );
  const src = await mkdtemp(join(tmpdir(), 'wgs-src-'));
  try {
    await run('sh', ['-c', 'git archive --format=tar "$1" | tar -x -C "$2"', 'sh', commit, src]);
    await symlink(resolve('node_modules'), join(src, 'node_modules'));
    const r = await run(
      'bash',
      [join(src, 'packaging/build.sh'), '--target', resolve(targetDir), '--version', version],
      { timeoutMs: 5 * 60_000, label: `build ${commit.slice(0, 7)}` },
    );
    const files = r.stdout
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
    const deb = files.find((f) => f.endsWith('.deb'));
    const rpm = files.find((f) => f.endsWith('.rpm'));
    if (!deb || !rpm)
      throw new Error(`${commit}'s packaging/build.sh did not print a .deb and an .rpm:\n${r.stdout}\n${r.stderr}`);
    return { version, deb, rpm };
  } finally {
    await rm(src, { recursive: true, force: true });
  }
}

/** Package names in a .deb's Depends (first alternative of each, versions dropped). */
export async function debDependencies(deb: string): Promise<string[]> {
  const r = await run('dpkg-deb', ['-f', deb, 'Depends']);
  return r.stdout
    .split(',')
    .map((d) => d.split('|')[0]!.trim().split(/[\s(]/)[0]!)
    .filter(Boolean);
}
