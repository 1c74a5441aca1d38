/*
 * The documents that are not resources: the root path list, /version, the health checks, and
 * legacy (unaggregated) discovery — /api, /apis, /apis/<group> and the APIResourceList of each
 * group/version — which is what kubectl reads to find resource types.
 */
import type { RequestContext } from '../http/context.js';
import { sendJson } from '../http/respond.js';
import { apiGroup, apiResourceList } from '../registry.js';
import { methodNotAllowed, pathNotFound } from '../status.js';

const VERSION = {
  major: '1',
  minor: '32',
  gitVersion: 'v1.32.0-kube-api-test',
  gitCommit: '0000000000000000000000000000000000000000',
  gitTreeState: 'clean',
  buildDate: '2025-01-01T00:00:00Z',
  goVersion: 'go1.23.4',
  compiler: 'gc',
  platform: 'linux/amd64',
};

/** Discovery documents are read-only: anything but GET gets 405. */
function requireGet(ctx: RequestContext): void {
  if (ctx.method !== 'GET') throw methodNotAllowed();
}

/** `/`, `/version`, `/healthz`, `/livez`, `/readyz` (`first` is the path's only segment, if any); 404 for other paths. */
export function serveTopLevel(ctx: RequestContext, first: string | undefined): void {
  requireGet(ctx);
  if (first === undefined) {
    const paths = ['/api', '/api/v1', '/apis', '/healthz', '/livez', '/readyz', '/version'];
    for (const [g, vs] of ctx.state.groups()) if (g) paths.push(`/apis/${g}`, ...vs.map((v) => `/apis/${g}/${v}`));
    sendJson(ctx.res, 200, { paths: paths.sort() });
  } else if (first === 'version') {
    sendJson(ctx.res, 200, VERSION);
  } else if (first === 'healthz' || first === 'livez' || first === 'readyz') {
    ctx.res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
    ctx.res.end('ok');
  } else {
    throw pathNotFound();
  }
}

/** `/api`: the versions of the core group. */
export function serveApiVersions(ctx: RequestContext): void {
  requireGet(ctx);
  const addr = ctx.state.url ? new URL(ctx.state.url).host : '';
  sendJson(ctx.res, 200, {
    kind: 'APIVersions',
    versions: ['v1'],
    serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: addr }],
  });
}

/** `/apis`: every named group. */
export function serveGroupList(ctx: RequestContext, groups: Map<string, string[]>): void {
  requireGet(ctx);
  sendJson(ctx.res, 200, {
    kind: 'APIGroupList',
    apiVersion: 'v1',
    groups: [...groups].map(([g, vs]) => apiGroup(g, vs)),
  });
}

/** `/apis/<group>`: one group and its versions. */
export function serveGroup(ctx: RequestContext, group: string, versions: string[]): void {
  requireGet(ctx);
  sendJson(ctx.res, 200, apiGroup(group, versions));
}

/** `/api/v1`, `/apis/<group>/<version>`: the resource types of a group/version. */
export function serveResourceList(ctx: RequestContext, group: string, version: string): void {
  requireGet(ctx);
  const rs = ctx.state.resources().filter((r) => r.group === group && r.version === version);
  sendJson(ctx.res, 200, apiResourceList(group ? `${group}/${version}` : version, rs));
}
