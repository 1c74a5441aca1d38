/**
 * Location leaders through `coordination.k8s.io` Leases, one per location (`wg-overlay-loc-<hash>`
 * in `[mesh] lease_namespace`): the leader renews its location's Lease every third of its
 * duration; every node watches the Leases and counts one as live while it saw it renewed within its
 * duration (by its own clock, so clocks that disagree do not matter); when a Lease runs out (or
 * there is none), the location's candidates take it in their order, each waiting one step more
 * than the one before, and the API server's optimistic concurrency lets exactly one win. A holder
 * keeps the role while it renews: a returning node does not take it back. Only a node that the
 * topology makes leader over a live holder (by a better rank) takes the Lease over at once, and
 * that holder stops renewing it. Why Leases and not Node annotations: a renewal every two seconds
 * on the Node would send the whole Node object (10-20 KB) to every Node watcher in the cluster
 * (every daemon, the scheduler, controllers); a Lease is a few hundred bytes and only wg-overlay's
 * daemons watch them.
 */
import { createHash } from 'node:crypto';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../log/logger.js';
import { ANNOTATION_PREFIX } from '../mesh/annotations.js';
import { escapeUnsafe } from '../mesh/text.js';
import { describeApiError, httpStatus } from './api-errors.js';
import { getJson, sendJson, watchStream } from './api-http.js';
import { Reflector, type ListPage, type ReflectorApi } from './reflector.js';

/** The label that marks wg-overlay's Leases. */
export const LEASE_LABEL = 'app.kubernetes.io/managed-by';
const LEASE_LABEL_VALUE = 'wg-overlay';

/** The annotation of a Lease that names its location id. */
export const LEASE_LOCATION_ANNOTATION = `${ANNOTATION_PREFIX}location`;

/** A Lease as the API has it (the fields wg-overlay uses). */
export interface LeaseObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

/** How the Leases are reached (tests give fakes). */
export interface LeaseApi extends ReflectorApi {
  create(lease: LeaseObject): Promise<LeaseObject>;
  /** Replaces a Lease; rejects with 409 when `metadata.resourceVersion` is no longer current. */
  replace(lease: LeaseObject): Promise<LeaseObject>;
}

/** The name of a location's Lease: a hash, since location names need not be valid object names. */
export function leaseName(locationId: string): string {
  return `wg-overlay-loc-${createHash('sha256').update(locationId).digest('hex').slice(0, 16)}`;
}

/** The Leases of `namespace` over HTTP(S) with the kubeconfig's credentials. */
export function leasesApi(kc: KubeConfig, namespace: string, timeoutMs = 10_000): LeaseApi {
  const leasesPath = `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`;
  const selector = `${LEASE_LABEL}=${LEASE_LABEL_VALUE}`;
  return {
    list: async (query) =>
      (await getJson(kc, leasesPath, { ...query, labelSelector: selector }, timeoutMs)) as ListPage,
    watch: (query, onEvent, onEnd, onOpen) =>
      watchStream(kc, leasesPath, { ...query, labelSelector: selector }, { onEvent, onEnd, onOpen }),
    create: async (lease) =>
      (await sendJson(kc, leasesPath, { method: 'POST', body: lease }, timeoutMs)) as LeaseObject,
    replace: async (lease) =>
      (await sendJson(
        kc,
        `${leasesPath}/${lease.metadata.name}`,
        { method: 'PUT', body: lease },
        timeoutMs,
      )) as LeaseObject,
  };
}

/** One location's Lease as this node last saw it. */
interface Seen {
  lease: LeaseObject;
  location: string;
  holder: string | undefined;
  durationMs: number;
  /** When this node saw it change last (its own clock). */
  seenAt: number;
}

/** What this node wants from its location's Lease, from the latest topology. */
export interface LeaderWish {
  location: string;
  /** Who should take the Lease when it is free, best first. */
  candidates: readonly string[];
  /** Who the topology says leads (absent: whoever holds the Lease); a holder that is not it stops renewing, and it takes the Lease over. */
  leader?: string;
}

/** Options of the Lease part. */
export interface LocationLeasesOptions {
  api: LeaseApi;
  namespace: string;
  /** This node's name (the holder identity it writes). */
  self: string;
  leaseSeconds: number;
  log: Logger;
  /** Called when a Lease changed or ran out (the topology must be decided again). */
  onChange(): void;
  /** How long each candidate waits after the one before it (ms). */
  stepMs?: number;
  now?: () => number;
}

/** The MicroTime form the API uses. */
const microTime = (ms: number): string => new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');

/** Watches the location Leases, renews this node's own, and takes its location's when it is free. */
export class LocationLeases {
  readonly name = 'location leases';
  private readonly seen = new Map<string, Seen>();
  private reflector: Reflector<LeaseObject> | undefined;
  private wish: LeaderWish | undefined;
  private timer: NodeJS.Timeout | undefined;
  private expiry: NodeJS.Timeout | undefined;
  /** When each location was first seen without a live holder (the candidates' clock starts there). */
  private vacantSince = new Map<string, number>();
  private writing = false;
  private lastWrite = 0;
  /** The Leases were listed once, or listing them failed (then leaders are chosen by rank alone). */
  private listed = false;
  private readonly now: () => number;

  constructor(private readonly o: LocationLeasesOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Nothing happens until a wish arrives: clusters without locations never touch Leases. */
  start(): void {}

  private begin(): void {
    this.reflector = new Reflector<LeaseObject>({
      api: this.o.api,
      translate: (raw) => (isLease(raw) ? raw : undefined),
      log: this.o.log,
      what: 'lease watch',
      watchSeconds: 60,
    });
    this.reflector.start({
      onList: (items) => {
        this.listed = true;
        this.seen.clear();
        for (const l of items) this.take(l);
        this.changed();
      },
      onChange: (name, item) => {
        if (item) this.take(item);
        else for (const [loc, s] of this.seen) if (s.lease.metadata.name === name) this.seen.delete(loc);
        this.changed();
      },
      onUp: () => undefined,
      onError: (err) => {
        this.o.log.debug(`lease watch: ${describeApiError(err)}`);
        if (!this.listed) {
          // Not knowing who holds the Leases must not keep the mesh down (e.g. the Role is missing).
          this.listed = true;
          this.o.log.warning(
            `cannot list the location leader Leases in namespace ${escapeUnsafe(this.o.namespace)} (${describeApiError(err)}): leaders are chosen by rank until they can be read`,
          );
          this.o.onChange();
        }
        return undefined;
      },
    });
    const every = Math.max(200, Math.floor((this.o.leaseSeconds * 1000) / 3));
    this.timer = setInterval(() => void this.tick(), Math.min(every, this.o.stepMs ?? 1000));
  }

  stop(): void {
    this.reflector?.stop();
    clearInterval(this.timer);
    clearTimeout(this.expiry);
  }

  /**
   * True once the Leases were listed (or listing them failed): before that, a node that just
   * started cannot tell a location's live holder from none, and would lead by rank.
   */
  known(): boolean {
    return this.listed;
  }

  /** Live holders by location id. */
  holders(): Map<string, string> {
    const out = new Map<string, string>();
    for (const [loc, s] of this.seen) if (s.holder && this.live(s)) out.set(loc, s.holder);
    return out;
  }

  /** Holders whose Lease ran out, by location id. */
  lapsed(): Map<string, string> {
    const out = new Map<string, string>();
    for (const [loc, s] of this.seen) if (s.holder && !this.live(s)) out.set(loc, s.holder);
    return out;
  }

  /** What this node wants (undefined: granularity is not `location`: it takes no Lease). */
  want(wish: LeaderWish | undefined): void {
    this.wish = wish;
    if (wish && !this.reflector) this.begin();
  }

  private live(s: Seen): boolean {
    return this.now() < s.seenAt + s.durationMs;
  }

  private take(l: LeaseObject): void {
    const location = l.metadata.annotations?.[LEASE_LOCATION_ANNOTATION];
    // A Lease whose name is not its location's hash is not one of ours: ignored.
    if (!location || leaseName(location) !== l.metadata.name) return;
    const before = this.seen.get(location);
    const holder = l.spec.holderIdentity || undefined;
    const durationMs = Math.max(1, l.spec.leaseDurationSeconds ?? this.o.leaseSeconds) * 1000;
    const renewed = !before || before.lease.spec.renewTime !== l.spec.renewTime || before.holder !== holder;
    this.seen.set(location, { lease: l, location, holder, durationMs, seenAt: renewed ? this.now() : before.seenAt });
  }

  /** Reports a change, and arranges to report again when the next Lease runs out. */
  private changed(): void {
    this.o.onChange();
    clearTimeout(this.expiry);
    const next = Math.min(
      ...[...this.seen.values()].filter((s) => s.holder && this.live(s)).map((s) => s.seenAt + s.durationMs),
    );
    if (Number.isFinite(next)) this.expiry = setTimeout(() => this.changed(), Math.max(10, next - this.now() + 5));
  }

  /** Renews this node's Lease, or takes its location's when it is free and its turn has come. */
  private async tick(): Promise<void> {
    const wish = this.wish;
    if (!wish || this.writing) return;
    const s = this.seen.get(wish.location);
    const now = this.now();
    const leader = wish.leader ?? s?.holder;
    if (s?.holder === this.o.self && this.live(s)) {
      // Outranked (see decideTopology): the leader takes the Lease over.
      if (leader === this.o.self && now - this.lastWrite >= s.durationMs / 3) await this.write(s.lease, false);
      return;
    }
    if (s?.holder && this.live(s)) {
      this.vacantSince.delete(wish.location);
      if (leader === this.o.self) await this.write(s.lease, true, 'which it outranks');
      return;
    }
    // A holder whose Lease ran out comes after every other candidate (it takes the role back only if none does).
    const listed = wish.candidates.indexOf(this.o.self);
    const place = listed >= 0 ? listed : s?.holder === this.o.self ? wish.candidates.length + 1 : -1;
    if (place < 0) return;
    const since = this.vacantSince.get(wish.location) ?? (s?.holder ? s.seenAt + s.durationMs : now);
    this.vacantSince.set(wish.location, since);
    if (now >= since + place * (this.o.stepMs ?? 1000)) await this.write(s?.lease, true, 'whose Lease ran out');
  }

  /** Creates or replaces the Lease with this node as holder (`why` it takes it from its holder); a lost race is not an error. */
  private async write(current: LeaseObject | undefined, acquire: boolean, why = ''): Promise<void> {
    const wish = this.wish!;
    const now = this.now();
    const lease: LeaseObject = {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: {
        name: leaseName(wish.location),
        namespace: this.o.namespace,
        labels: { [LEASE_LABEL]: LEASE_LABEL_VALUE },
        annotations: { [LEASE_LOCATION_ANNOTATION]: wish.location },
        ...(current?.metadata.resourceVersion ? { resourceVersion: current.metadata.resourceVersion } : {}),
      },
      spec: {
        holderIdentity: this.o.self,
        leaseDurationSeconds: this.o.leaseSeconds,
        acquireTime: acquire ? microTime(now) : (current?.spec.acquireTime ?? microTime(now)),
        renewTime: microTime(now),
        leaseTransitions: (current?.spec.leaseTransitions ?? 0) + (acquire && current ? 1 : 0),
      },
    };
    this.writing = true;
    try {
      const written = current ? await this.o.api.replace(lease) : await this.o.api.create(lease);
      this.lastWrite = now;
      if (acquire)
        this.o.log.notice(
          `took the leader Lease of location ${escapeUnsafe(wish.location.replace(/^(location|node):/, ''))}${current?.spec.holderIdentity ? ` from ${escapeUnsafe(current.spec.holderIdentity)}, ${why}` : ''}`,
        );
      this.vacantSince.delete(wish.location);
      this.take(written);
      this.changed();
    } catch (err) {
      const code = httpStatus(err);
      if (code === 409) this.o.log.debug(`leader Lease of ${wish.location}: another node wrote it first`);
      else
        this.o.log.warning(
          `cannot ${acquire ? 'take' : 'renew'} the leader Lease of location ${escapeUnsafe(wish.location)}: ${describeApiError(err)}`,
        );
    } finally {
      this.writing = false;
    }
  }
}

/** True for a Lease-shaped object (validated: everything read from the API is hostile). */
function isLease(raw: unknown): raw is LeaseObject {
  const o = raw as LeaseObject | undefined;
  return (
    !!o &&
    typeof o === 'object' &&
    typeof o.metadata?.name === 'string' &&
    typeof o.spec === 'object' &&
    o.spec !== null &&
    (o.spec.holderIdentity === undefined ||
      (typeof o.spec.holderIdentity === 'string' && o.spec.holderIdentity.length <= 253)) &&
    (o.spec.leaseDurationSeconds === undefined ||
      (Number.isInteger(o.spec.leaseDurationSeconds) &&
        o.spec.leaseDurationSeconds > 0 &&
        o.spec.leaseDurationSeconds <= 3600))
  );
}

/**
 * The holders of the location Leases as an operator command sees them (one read, no watch): live
 * when renewed within their duration by this machine's clock, else lapsed.
 */
export async function readLeaseHolders(
  api: LeaseApi,
  now: number = Date.now(),
): Promise<{ holders: Map<string, string>; lapsed: Map<string, string> }> {
  const holders = new Map<string, string>();
  const lapsed = new Map<string, string>();
  const page = await api.list({});
  for (const raw of page.items ?? []) {
    if (!isLease(raw)) continue;
    const location = raw.metadata.annotations?.[LEASE_LOCATION_ANNOTATION];
    const holder = raw.spec.holderIdentity;
    if (!location || !holder || leaseName(location) !== raw.metadata.name) continue;
    const renewed = Date.parse(raw.spec.renewTime ?? '');
    const live = Number.isFinite(renewed) && now < renewed + (raw.spec.leaseDurationSeconds ?? 0) * 1000;
    (live ? holders : lapsed).set(location, holder);
  }
  return { holders, lapsed };
}
