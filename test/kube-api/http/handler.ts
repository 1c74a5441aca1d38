/*
 * The life of one request: it is logged, its body read, an injected failure thrown if one
 * matches, the user authenticated, and the request context made and routed; whatever is thrown
 * on the way is answered with a Status.
 */
import type * as http from 'node:http';
import { EXTRA_CREDENTIAL_ID } from '../auth.js';
import { route } from '../routes.js';
import type { ServerState } from '../state.js';
import { authenticate } from './authenticate.js';
import { isTrue, mediaType, type RequestContext, type RequestRecord } from './context.js';
import { readBody, sendError } from './respond.js';

/** Logs a request in `state.requests`; its status is filled in when the response is finished. */
function record(state: ServerState, req: http.IncomingMessage, res: http.ServerResponse, url: URL): RequestRecord {
  const r: RequestRecord = { method: req.method ?? 'GET', path: url.pathname, query: url.search };
  if (req.headers['content-type']) r.contentType = req.headers['content-type'];
  if (req.headers.accept) r.accept = req.headers.accept;
  if (req.headers['user-agent']) r.userAgent = req.headers['user-agent'];
  state.record(r);
  res.on('finish', () => (r.status = res.statusCode));
  return r;
}

/** Handles one request to completion; never rejects. */
export async function handleRequest(
  state: ServerState,
  req: http.IncomingMessage,
  res: http.ServerResponse,
): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://kube-api.invalid');
  const method = req.method ?? 'GET';
  const log = record(state, req, res, url);
  try {
    const body = await readBody(req);
    const watch = isTrue(url.searchParams.get('watch')) || url.pathname.includes('/watch/');
    state.faults.inject({ method, path: url.pathname, query: url.searchParams, watch });
    const user = authenticate(state, req, url.pathname);
    log.user = user.username;
    const credential = user.extra?.[EXTRA_CREDENTIAL_ID]?.[0];
    if (credential) log.credentialId = credential;
    const ctx: RequestContext = {
      state,
      req,
      res,
      method,
      url,
      query: url.searchParams,
      contentType: mediaType(req.headers['content-type']),
      body,
      user,
      dryRun: url.searchParams.getAll('dryRun').includes('All'),
    };
    route(ctx);
  } catch (err) {
    sendError(res, err);
  }
}
