/**
 * The route adapter: lists routes with `ip -j route`, and adds or deletes the daemon's own
 * routes, each tagged with a dedicated `proto` number so the daemon never touches anyone else's.
 */
import type { CommandRunner } from '../exec/runner.js';
import type { RouteChange } from '../mesh/desired/diff.js';
import type { RouteStatus } from '../mesh/observations/device.js';
import { parseCidr } from '../net/ip.js';
import type { IpBatch } from './ip-batch.js';

/** The `proto` number that marks routes wg-overlay created (free in iproute2's rt_protos). */
export const ROUTE_PROTO = '77';

interface IpRoute {
  dst?: string;
  dev?: string;
  gateway?: string;
  protocol?: string | number;
  type?: string;
}

/** Where a route goes, as `ip route` arguments: `via GATEWAY` or `dev DEVICE` (nothing when neither is known). */
function target(r: { dev?: string | undefined; gateway?: string | undefined }): string[] {
  if (r.gateway) return ['via', r.gateway];
  return r.dev ? ['dev', r.dev] : [];
}

/** Lists unicast routes of the main table, both families. */
export async function readRoutes(runner: CommandRunner): Promise<RouteStatus[]> {
  const out: RouteStatus[] = [];
  for (const family of ['-4', '-6']) {
    const res = await runner.run('ip', ['-j', family, 'route', 'show', 'table', 'main']);
    const list = JSON.parse(res.stdout.trim() || '[]') as IpRoute[];
    for (const r of list) {
      if (!r.dst || (r.type && r.type !== 'unicast')) continue;
      const dst =
        r.dst === 'default'
          ? family === '-4'
            ? '0.0.0.0/0'
            : '::/0'
          : r.dst.includes('/')
            ? r.dst
            : `${r.dst}/${family === '-4' ? 32 : 128}`;
      out.push({ dst, dev: r.dev, ...(r.gateway ? { gateway: r.gateway } : {}), protocol: String(r.protocol ?? '') });
    }
  }
  return out;
}

/**
 * Applies route changes: `ip route replace … proto 77` to add (`ip route add` with `exclusive`,
 * which refuses to touch an existing route, unless the add `replaces` an own route), `ip route
 * del` for own routes; through the `ip -batch`
 * co-process when one is given (falling back to one command each if it fails). Returns the
 * destinations an exclusive add found already routed.
 */
export async function applyRouteChanges(
  runner: CommandRunner,
  changes: readonly RouteChange[],
  opts: { exclusive?: boolean; batch?: IpBatch } = {},
): Promise<string[]> {
  const todo = changes.filter((c): c is Exclude<RouteChange, { op: 'conflict' }> => c.op !== 'conflict');
  const verb = (c: Extract<RouteChange, { op: 'add' }>): string => (opts.exclusive && !c.replaces ? 'add' : 'replace');
  if (opts.batch && todo.length > 0) {
    const lines = todo.map((c) =>
      c.op === 'add'
        ? `route ${verb(c)} ${c.route.dst} ${target(c.route).join(' ')} proto ${ROUTE_PROTO}`
        : `route del ${c.route.dst} proto ${ROUTE_PROTO}${target(c.route).length > 0 ? ` ${target(c.route).join(' ')}` : ''}`,
    );
    let errors: Map<number, string> | undefined;
    try {
      errors = await opts.batch.run(lines);
    } catch {
      errors = undefined; // the co-process died: one command per change below
    }
    if (errors) {
      const clashes: string[] = [];
      for (const [i, message] of errors) {
        const c = todo[i]!;
        if (c.op !== 'add') continue; // deleting a route that is already gone is fine
        if (/File exists/i.test(message)) clashes.push(c.route.dst);
        else throw new Error(`ip route add ${c.route.dst} ${target(c.route).join(' ')}: ${message}`);
      }
      return clashes;
    }
  }
  const clashes: string[] = [];
  for (const c of todo) {
    if (c.op === 'add') {
      const fam = parseCidr(c.route.dst)?.family === 6 ? '-6' : '-4';
      const res = await runner.run(
        'ip',
        [fam, 'route', verb(c), c.route.dst, ...target(c.route), 'proto', ROUTE_PROTO],
        { allowFailure: opts.exclusive },
      );
      if (res.exitCode !== 0) {
        if (/File exists/i.test(res.stderr)) clashes.push(c.route.dst);
        else
          throw new Error(
            `ip ${fam} route add ${c.route.dst} ${target(c.route).join(' ')}: ${res.stderr.trim() || `exit ${res.exitCode}`}`,
          );
      }
    } else {
      const fam = parseCidr(c.route.dst)?.family === 6 ? '-6' : '-4';
      const args = [fam, 'route', 'del', c.route.dst, 'proto', ROUTE_PROTO, ...target(c.route)];
      await runner.run('ip', args, { allowFailure: true });
    }
  }
  return clashes;
}
