/*
 * Reading request bodies and writing responses: JSON bodies, objects in the negotiated format,
 * and errors as Status objects (any other error is a 500 InternalError).
 */
import type * as http from 'node:http';
import type { KubeObject } from '../registry.js';
import { ApiError, badRequest } from '../status.js';
import type { ResourceRequest } from './context.js';
import { renderObject } from './format.js';

/** Bodies larger than this get 413, as kube-apiserver's limit for JSON requests. */
const MAX_BODY = 3 * 1024 * 1024;

/** Sends `obj` as a complete JSON response. */
export function sendJson(
  res: http.ServerResponse,
  code: number,
  obj: unknown,
  headers: Record<string, string> = {},
): void {
  const body = JSON.stringify(obj);
  res.writeHead(code, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-cache, private',
    ...headers,
  });
  res.end(body);
}

/** Sends an object in the format the request negotiated (a single object asked for as a PartialObjectMetadataList is sent whole). */
export function sendObject(rc: ResourceRequest, code: number, obj: KubeObject): void {
  const format = rc.format.partialMetadata?.list ? { ...rc.format, partialMetadata: undefined } : rc.format;
  sendJson(rc.res, code, renderObject(rc.resource, obj, format));
}

/** Answers with the Status of an error (500 InternalError unless it is an ApiError); cuts the connection when a response was begun. */
export function sendError(res: http.ServerResponse, err: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const e =
    err instanceof ApiError ? err : new ApiError(500, 'InternalError', `Internal error occurred: ${errorMessage(err)}`);
  const headers: Record<string, string> = {};
  if (e.details?.retryAfterSeconds !== undefined) headers['Retry-After'] = String(e.details.retryAfterSeconds);
  sendJson(res, e.code, e.toStatus(), headers);
}

/** Reads the whole request body (413 RequestEntityTooLarge beyond 3 MiB). */
export function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new ApiError(413, 'RequestEntityTooLarge', 'the request body is too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** The JSON value of a body (400 when it is empty or not JSON). */
export function parseJson(body: Buffer): unknown {
  if (body.length === 0) throw badRequest('the request body is empty');
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch (err) {
    throw badRequest(`error decoding request body as JSON: ${errorMessage(err)}`);
  }
}

/** The message of a thrown value. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
