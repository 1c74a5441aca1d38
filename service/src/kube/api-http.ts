/**
 * Plain HTTP(S) requests to the API server with the kubeconfig's credentials: a JSON GET, POST or
 * PUT with a timeout (list pages, leader Leases) and a watch stream of newline-delimited events
 * that can be aborted — raw JSON in both cases, so large lists are translated item by item
 * instead of being deserialised into client-node's model classes first.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { createInterface } from 'node:readline';
import type { KubeConfig } from '@kubernetes/client-node';

/** An HTTP error answer of the API server (shaped like client-node's ApiException: `code`, `body`). */
export class ApiHttpError extends Error {
  constructor(
    readonly code: number,
    readonly body: string,
    what: string,
  ) {
    super(`${what}: HTTP ${code}`);
    this.name = 'ApiHttpError';
  }
}

/** Query parameters; undefined ones are left out. */
export type Query = Record<string, string | number | boolean | undefined>;

/** Opens a request (GET unless `send` says otherwise) with the kubeconfig's credentials (re-applied per request, so a rotated token is used). */
async function open(
  kc: KubeConfig,
  path: string,
  query: Query,
  send?: { method: SendMethod; body: string },
): Promise<{ req: http.ClientRequest; response: Promise<http.IncomingMessage> }> {
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new Error('the kubeconfig has no current cluster');
  const url = new URL(server.replace(/\/+$/, '') + path);
  for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, String(v));
  const opts: https.RequestOptions = {
    // A DELETE body is framed by its length only (Node does not chunk DELETE bodies by default).
    headers: {
      Accept: 'application/json',
      ...(send ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(send.body) } : {}),
    },
  };
  await kc.applyToHTTPSOptions(opts);
  opts.method = send?.method ?? 'GET';
  const req = (url.protocol === 'http:' ? http : https).request(url, opts);
  const response = new Promise<http.IncomingMessage>((resolve, reject) => {
    req.on('response', resolve);
    req.on('error', reject);
  });
  req.end(send?.body);
  return { req, response };
}

/** Reads a whole answer body. */
function readBody(res: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', reject);
  });
}

/** GETs `path` and parses the JSON answer; rejects on a non-2xx answer or after `timeoutMs`. */
export async function getJson(kc: KubeConfig, path: string, query: Query, timeoutMs: number): Promise<unknown> {
  return requestJson(kc, path, { query, timeoutMs });
}

/** How a body is sent: create (POST), replace (PUT) or delete with DeleteOptions (DELETE). */
export type SendMethod = 'POST' | 'PUT' | 'DELETE';

/** A JSON body to send, and how. */
export interface JsonSend {
  method: SendMethod;
  body: unknown;
}

/** POSTs (creates), PUTs (replaces) or DELETEs `send.body` as JSON at `path` and parses the answer; rejects like getJson. */
export async function sendJson(kc: KubeConfig, path: string, send: JsonSend, timeoutMs: number): Promise<unknown> {
  return requestJson(kc, path, {
    query: {},
    timeoutMs,
    send: { method: send.method, body: JSON.stringify(send.body) },
  });
}

/** One JSON request: a GET with `query`, or the `send` given, answered within `timeoutMs`. */
interface JsonRequest {
  query: Query;
  timeoutMs: number;
  send?: { method: SendMethod; body: string };
}

/** Makes one JSON request and parses the answer; rejects on a non-2xx answer or after the timeout. */
async function requestJson(kc: KubeConfig, path: string, r: JsonRequest): Promise<unknown> {
  const { query, timeoutMs, send } = r;
  const what = `${send?.method ?? 'GET'} ${path}`;
  const { req, response } = await open(kc, path, query, send);
  const timer = setTimeout(
    () => req.destroy(new Error(`${what}: no answer within ${Math.round(timeoutMs / 1000)} s`)),
    timeoutMs,
  );
  try {
    const res = await response;
    const body = await readBody(res);
    if ((res.statusCode ?? 0) < 200 || (res.statusCode ?? 0) >= 300)
      throw new ApiHttpError(res.statusCode ?? 0, body, what);
    return JSON.parse(body) as unknown;
  } finally {
    clearTimeout(timer);
  }
}

/** A running watch request. */
export interface WatchHandle {
  /** Ends the stream (its `onEnd` is called with no error). */
  abort(): void;
}

/** What a watch reports to. */
export interface WatchHandlers {
  /** Every parsed event line. */
  onEvent: (event: { type?: string; object?: unknown }) => void;
  /** Once, when the stream ends (with the error, if any). */
  onEnd: (err?: unknown) => void;
  /** Once the server accepted the watch. */
  onOpen?: () => void;
}

/** Opens a watch on `path`, reporting to `handlers`; rejects when the request cannot be made. */
export async function watchStream(
  kc: KubeConfig,
  path: string,
  query: Query,
  handlers: WatchHandlers,
): Promise<WatchHandle> {
  const { onEvent, onEnd, onOpen } = handlers;
  const { req, response } = await open(kc, path, { ...query, watch: true });
  let ended = false;
  const end = (err?: unknown): void => {
    if (ended) return;
    ended = true;
    req.destroy();
    onEnd(err);
  };
  response.then(
    async (res) => {
      if (res.statusCode !== 200) {
        end(new ApiHttpError(res.statusCode ?? 0, await readBody(res).catch(() => ''), `watch ${path}`));
        return;
      }
      onOpen?.();
      const lines = createInterface({ input: res });
      lines.on('line', (line) => {
        if (ended || line.trim() === '') return;
        let event: { type?: string; object?: unknown };
        try {
          event = JSON.parse(line) as { type?: string; object?: unknown };
        } catch {
          return; // a torn line: the stream is about to end anyway
        }
        onEvent(event);
      });
      lines.on('close', () => end());
      // readline passes its input's errors on (an aborted stream ends in 'aborted').
      lines.on('error', (err) => end(err));
      res.on('error', (err) => end(err));
    },
    (err: unknown) => end(err),
  );
  return { abort: () => end() };
}
