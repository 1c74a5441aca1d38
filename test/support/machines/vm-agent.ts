/**
 * The command agent of the kernel tier's VM: copied into the VM image (kernel-vm.ts) and run there
 * by Debian's Node.js 18 as `wgk-agent.service`, it serves the test process over the VM's underlay
 * address, running commands and writing files as root. Every request must carry the token given
 * on the kernel command line (`wgk.token=`). It imports only Node.js's own modules.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { dirname } from 'node:path';
import { pathToFileURL } from 'node:url';

/** The TCP port the agent listens on. */
export const AGENT_PORT = 7070;

/** `POST /run`: a command to run to completion. */
export interface AgentRunRequest {
  cmd: string;
  args: string[];
  /** Written to the command's stdin (default: none, stdin is /dev/null). */
  input?: string;
  /** Added to the command's environment (PATH and LANG are always set). */
  env?: Record<string, string>;
  /** Killed (SIGKILL) after this long; default 120 s. */
  timeoutMs?: number;
}

/** The answer to `POST /run`. */
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
export interface AgentWriteRequest {
  path: string;
  /** The contents, base64. */
  data: string;
  mode: number;
}

/** Output kept per stream; more is cut (the head is kept). */
const MAX_OUTPUT = 8 * 1024 * 1024;

/** Runs one command; resolves when it exited (and its pipes closed, or 500 ms later for daemonising commands). */
function runCommand(req: AgentRunRequest): Promise<AgentRunResponse> {
  return new Promise((resolve) => {
    const out = { stdout: '', stderr: '' };
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
        if (out[name].length < MAX_OUTPUT) out[name] += chunk;
      });
    }
    if (req.input !== undefined) child.stdin?.end(req.input);
    child.on('error', (err) => finish(`cannot run ${req.cmd}: ${err.message}`));
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      // A command that leaves a daemon behind holding its pipes still counts as finished.
      setTimeout(() => finish(), 500).unref();
    });
    child.on('close', () => finish());
  });
}

/** Reads a request body as JSON. */
async function readJson<T>(req: IncomingMessage): Promise<T> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8')) as T;
}

/** Answers with JSON. */
function reply(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
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
  const server = createServer((req, res) => {
    (async () => {
      if (req.headers.authorization !== `Bearer ${token}`) return reply(res, 401, { error: 'bad token' });
      if (req.method === 'GET' && req.url === '/health') return reply(res, 200, { ok: true });
      if (req.method === 'POST' && req.url === '/run')
        return reply(res, 200, await runCommand(await readJson<AgentRunRequest>(req)));
      if (req.method === 'POST' && req.url === '/write') {
        const w = await readJson<AgentWriteRequest>(req);
        await mkdir(dirname(w.path), { recursive: true });
        await writeFile(w.path, Buffer.from(w.data, 'base64'), { mode: w.mode });
        await chmod(w.path, w.mode);
        return reply(res, 200, { ok: true });
      }
      return reply(res, 404, { error: `no ${req.method} ${req.url}` });
    })().catch((err: unknown) => reply(res, 500, { error: err instanceof Error ? err.message : String(err) }));
  });
  server.requestTimeout = 0;
  server.listen(Number(params.get('port') ?? AGENT_PORT), address, () =>
    console.log(`wgk-agent listening on ${address}`),
  );
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main();
