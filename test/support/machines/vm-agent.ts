/**
 * The command agent of the kernel tier's VM: copied into the VM image (kernel-vm.ts) and run there
 * by Debian's Node.js 18 as `wgk-agent.service`, it serves the test process over the VM's underlay
 * address, running commands and writing files as root. Every request must carry the token given
 * on the kernel command line (`wgk.token=`). It imports only Node.js's own modules.
 *
 * Under software emulation on a loaded host the guest can stall for seconds, so no request is
 * held open for long and every request may be repeated: a command or a write is a job with an id
 * chosen by the host. `POST /run` and `POST /write` start the job (or, when the id is known, do
 * nothing: the host is retrying) and wait at most `waitMs` for it to finish; `GET /job/<id>`
 * waits again. Either answers with the result once the job is done, or `done: false`. Results are
 * remembered for a while, so an answer lost on the way is asked for again, never run twice.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { loadavg, uptime } from 'node:os';
import { dirname } from 'node:path';
import { pathToFileURL } from 'node:url';

/** The TCP port the agent listens on. */
export const AGENT_PORT = 7070;

/** What every job request carries. */
export interface AgentJobRequest {
  /** Unique per job, the same on every retry of it: a known id starts nothing new. */
  id: string;
  /** How long to wait for the job before answering `done: false` (default 0). */
  waitMs?: number;
}

/** `POST /run`: a command to run to completion. */
export interface AgentRunRequest extends AgentJobRequest {
  cmd: string;
  args: string[];
  /** Written to the command's stdin (default: none, stdin is /dev/null). */
  input?: string;
  /** Added to the command's environment (PATH and LANG are always set). */
  env?: Record<string, string>;
  /** Killed (SIGKILL) after this long; default 120 s. */
  timeoutMs?: number;
}

/** The result of `POST /run`. */
export interface AgentRunResponse {
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** Why the command could not be started, if it could not. */
  error?: string;
}

/** `POST /write`: a file to write (parent directories are created). */
export interface AgentWriteRequest extends AgentJobRequest {
  path: string;
  /** The contents, base64. */
  data: string;
  mode: number;
}

/** The result of `POST /write`. */
export interface AgentWriteResponse {
  /** Why the file could not be written, if it could not. */
  error?: string;
}

/** The answer to `POST /run`, `POST /write` and `GET /job/<id>`. */
export interface AgentJobAnswer<T> {
  id: string;
  /** Whether the job has finished (`result` is set then). */
  done: boolean;
  /** How long the job has been running, or ran (ms, as the guest measures it). */
  elapsedMs: number;
  result?: T;
}

/** The answer to `GET /health`: cheap, and says how busy the guest is. */
export interface AgentHealth {
  ok: true;
  /** Seconds since the guest booted. */
  uptimeS: number;
  /** The guest's load averages (1, 5, 15 min). */
  load: number[];
  /** Jobs still running. */
  running: number;
}

/** Output kept per stream; more is cut (the head is kept). */
const MAX_OUTPUT = 8 * 1024 * 1024;
/** How long a finished job's result is kept for an answer that got lost. */
const KEEP_RESULTS_MS = 15 * 60_000;
/** At most this many finished jobs are kept (the oldest go first). */
const KEEP_RESULTS = 200;
/** The longest a request may wait for its job (the host asks for less). */
const MAX_WAIT_MS = 60_000;

/** How long a command's pipes must be quiet after it exited, when something it left behind holds them open. */
const QUIET_MS = 500;
/** ...and how long after its exit the agent stops waiting for that when what it left behind keeps writing. */
const MAX_DRAIN_MS = 5_000;

/**
 * Runs one command; resolves when it exited and its pipes closed, or (a command that leaves a
 * daemon behind holding them) when they have been quiet for QUIET_MS after it exited (at most
 * MAX_DRAIN_MS after it).
 */
function runCommand(req: AgentRunRequest): Promise<AgentRunResponse> {
  return new Promise((resolve) => {
    const out = { stdout: '', stderr: '' };
    let lastOutput = Date.now();
    let timedOut = false;
    let exited: { code: number | null; signal: string | null } | undefined;
    let done = false;
    const finish = (error?: string): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({
        exitCode: exited?.code ?? null,
        signal: exited?.signal ?? null,
        ...out,
        timedOut,
        ...(error ? { error } : {}),
      });
    };
    const child = spawn(req.cmd, req.args, {
      env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', ...req.env },
      stdio: [req.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, req.timeoutMs ?? 120_000);
    for (const name of ['stdout', 'stderr'] as const) {
      child[name]?.setEncoding('utf8').on('data', (chunk: string) => {
        lastOutput = Date.now();
        if (out[name].length < MAX_OUTPUT) out[name] += chunk;
      });
    }
    if (req.input !== undefined) child.stdin?.on('error', () => undefined).end(req.input);
    child.on('error', (err) => finish(`cannot run ${req.cmd}: ${err.message}`));
    // Quiet is judged after an I/O poll (setImmediate runs after it): when the guest stalled, a
    // timer that fires late must not cut output still waiting in the pipes (a journal read empty).
    let exitedAt = 0;
    const finishWhenQuiet = (): void => {
      setImmediate(() => {
        const now = Date.now();
        if (now - lastOutput >= QUIET_MS || now - exitedAt >= MAX_DRAIN_MS) finish();
        else setTimeout(finishWhenQuiet, QUIET_MS);
      });
    };
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      exitedAt = Date.now();
      setTimeout(finishWhenQuiet, QUIET_MS);
    });
    child.on('close', () => finish());
  });
}

/** Writes one file (parent directories created, mode set even on an existing file). */
async function writeOne(w: AgentWriteRequest): Promise<AgentWriteResponse> {
  try {
    await mkdir(dirname(w.path), { recursive: true });
    await writeFile(w.path, Buffer.from(w.data, 'base64'), { mode: w.mode });
    await chmod(w.path, w.mode);
    return {};
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}

/** A command or write, by id. */
interface Job {
  what: string;
  started: number;
  finished?: number;
  result?: unknown;
  promise: Promise<void>;
}

/** The jobs the host started, running or finished (finished ones until they are pruned). */
class Jobs {
  private readonly byId = new Map<string, Job>();

  get running(): number {
    return [...this.byId.values()].filter((j) => j.finished === undefined).length;
  }

  get(id: string): Job | undefined {
    return this.byId.get(id);
  }

  /** The job with this id: the one already known (a retry), else a new one running `work`. */
  start(id: string, what: string, work: () => Promise<unknown>): Job {
    const known = this.byId.get(id);
    if (known) {
      console.log(`job ${id} (${what}) asked for again, ${known.finished ? 'finished' : 'still running'}`);
      return known;
    }
    this.prune();
    const job: Job = { what, started: Date.now(), promise: Promise.resolve() };
    job.promise = work().then(
      (result) => {
        job.result = result;
        job.finished = Date.now();
        const ms = job.finished - job.started;
        if (ms > 10_000) console.log(`job ${id} (${what}) took ${(ms / 1000).toFixed(1)} s`);
      },
      (err: unknown) => {
        job.result = { error: err instanceof Error ? err.message : String(err) };
        job.finished = Date.now();
      },
    );
    this.byId.set(id, job);
    return job;
  }

  /** Forgets finished jobs older than KEEP_RESULTS_MS, and the oldest beyond KEEP_RESULTS. */
  private prune(): void {
    const now = Date.now();
    const finished = [...this.byId.entries()].filter(([, j]) => j.finished !== undefined);
    finished.sort((x, y) => x[1].finished! - y[1].finished!);
    finished.forEach(([id, j], i) => {
      if (now - j.finished! > KEEP_RESULTS_MS || i < finished.length - KEEP_RESULTS) this.byId.delete(id);
    });
  }
}

/** Waits at most `waitMs` for the job, then says where it is. */
async function answer(id: string, job: Job, waitMs: number): Promise<AgentJobAnswer<unknown>> {
  if (job.finished === undefined && waitMs > 0) {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([job.promise, new Promise((r) => (timer = setTimeout(r, Math.min(waitMs, MAX_WAIT_MS))))]);
    clearTimeout(timer);
  }
  const done = job.finished !== undefined;
  return { id, done, elapsedMs: (job.finished ?? Date.now()) - job.started, ...(done ? { result: job.result } : {}) };
}

/** Reads a request body as JSON. */
async function readJson<T>(req: IncomingMessage): Promise<T> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8')) as T;
}

/** Answers with JSON (unless the host has given up on this request already). */
function reply(res: ServerResponse, status: number, body: unknown): void {
  if (res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** The agent's answer to one request. */
async function handle(jobs: Jobs, req: IncomingMessage): Promise<[number, unknown]> {
  const url = new URL(req.url ?? '/', 'http://agent');
  if (req.method === 'GET' && url.pathname === '/health') {
    const health: AgentHealth = { ok: true, uptimeS: uptime(), load: loadavg(), running: jobs.running };
    return [200, health];
  }
  if (req.method === 'POST' && url.pathname === '/run') {
    const r = await readJson<AgentRunRequest>(req);
    const job = jobs.start(r.id, `${r.cmd} ${r.args.join(' ')}`.slice(0, 100), () => runCommand(r));
    return [200, await answer(r.id, job, r.waitMs ?? 0)];
  }
  if (req.method === 'POST' && url.pathname === '/write') {
    const w = await readJson<AgentWriteRequest>(req);
    const job = jobs.start(w.id, `write ${w.path}`, () => writeOne(w));
    return [200, await answer(w.id, job, w.waitMs ?? 0)];
  }
  const m = /^\/job\/([\w.-]+)$/.exec(url.pathname);
  if (req.method === 'GET' && m) {
    const job = jobs.get(m[1]!);
    if (!job) return [404, { error: `no job ${m[1]} (never started here, or forgotten: did the agent restart?)` }];
    return [200, await answer(m[1]!, job, Number(url.searchParams.get('waitMs') ?? 0))];
  }
  return [404, { error: `no ${req.method} ${url.pathname}` }];
}

/** Starts the agent with the token, address and port from the kernel command line. */
function main(): void {
  const params = new Map(
    readFileSync('/proc/cmdline', 'utf8')
      .trim()
      .split(/\s+/)
      .filter((w) => w.startsWith('wgk.'))
      .map((w) => {
        const i = w.indexOf('=');
        return [w.slice(4, i), w.slice(i + 1)] as [string, string];
      }),
  );
  const token = params.get('token');
  const address = params.get('addr')?.split('/')[0];
  if (!token || !address) throw new Error('wgk-agent: the kernel command line has no wgk.token= or wgk.addr=');
  const jobs = new Jobs();
  const server = createServer((req, res) => {
    if (req.headers.authorization !== `Bearer ${token}`) return reply(res, 401, { error: 'bad token' });
    handle(jobs, req).then(
      ([status, body]) => reply(res, status, body),
      (err: unknown) => reply(res, 500, { error: err instanceof Error ? err.message : String(err) }),
    );
  });
  // Requests are short (the host waits for jobs in rounds), but a slow guest may take a while to read a large one.
  server.requestTimeout = 0;
  server.headersTimeout = 120_000;
  server.listen(Number(params.get('port') ?? AGENT_PORT), address, () =>
    console.log(`wgk-agent listening on ${address}`),
  );
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main();
