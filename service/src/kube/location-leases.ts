/**
 * The location leader Leases (`coordination.k8s.io`, one per location, `wg-overlay-loc-<hash>` in
 * `[mesh] lease_namespace`): the watch that reads them and the writes the leadership step of
 * `mesh/observations/leadership.ts` asks for. Who leads is decided from the Node list; a Lease
 * only shows that its writer is alive. Why Leases and not Node annotations: a renewal every two
 * seconds on the Node would send the whole Node object (10-20 KB) to every Node watcher in the
 * cluster (every daemon, the scheduler, controllers); a Lease is a few hundred bytes and only
 * wg-overlay's daemons watch them.
 */
import { createHash } from 'node:crypto';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../log/logger.js';
import { ANNOTATION_PREFIX } from '../mesh/annotations.js';
import { escapeUnsafe } from '../mesh/text.js';
import { describeApiError, httpStatus } from './api-errors.js';
import { getJson, sendJson, watchStream } from './api-http.js';
import { Reflector, type ListPage, type ReflectorApi } from './reflector.js';
import {
  forgetLease,
  leaseTurn,
  livenessOf,
  newLeaseBook,
  nextLapse,
  recordLease,
  vacancyStart,
  type LeaderWish,
  type LeadershipTiming,
  type Liveness,
} from '../mesh/observations/leadership.js';

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

/** Options of the Lease part. */
export interface LocationLeasesOptions {
  api: LeaseApi;
  namespace: string;
  /** This node's name (the holder identity it writes). */
  self: string;
  /** `[mesh] leader_lease`: how long a writer counts as alive (the Lease's own duration is never believed). */
  leaseSeconds: number;
  log: Logger;
  /** Called when a Lease changed or a writer lapsed (the topology must be decided again). */
  onChange(): void;
  /** How long each candidate waits after the one before it (ms). */
  stepMs?: number;
  now?: () => number;
}

/** The MicroTime form the API uses. */
const microTime = (ms: number): string => new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');

/** A location id as an admin writes it (without `location:`). */
const locationName = (id: string): string => escapeUnsafe(id.replace(/^(location|node):/, ''));

/**
 * Watches the location Leases and writes this node's location's Lease when the leadership step
 * says so: the API calls and timers around the pure rules of `mesh/observations/leadership.ts`.
 */
export class LocationLeases {
  readonly name = 'location leases';
  private readonly book = newLeaseBook();
  /** The Leases as read, by location id (for their resourceVersion when writing). */
  private readonly objects = new Map<string, LeaseObject>();
  private reflector: Reflector<LeaseObject> | undefined;
  private wish: LeaderWish | undefined;
  private timer: NodeJS.Timeout | undefined;
  private expiry: NodeJS.Timeout | undefined;
  private vacantSince: number | undefined;
  private stopped = false;
  private writing = false;
  private lastWrite = 0;
  /** The Leases were listed once, or listing them failed (then leaders are chosen by rank alone). */
  private listed = false;
  private readonly now: () => number;

  constructor(private readonly o: LocationLeasesOptions) {
    this.now = o.now ?? Date.now;
  }

  private get timing(): LeadershipTiming {
    return { durationMs: this.o.leaseSeconds * 1000, stepMs: this.o.stepMs ?? 1000 };
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
        for (const l of items) this.take(l);
        this.changed();
      },
      onChange: (name, item) => {
        if (item) this.take(item);
        else for (const [loc, l] of this.objects) if (l.metadata.name === name) this.forget(loc);
        this.changed();
      },
      onUp: () => undefined,
      onError: (err) => this.listFailed(err),
    });
    // Often enough that a leader acts well within one candidate step of the one before it.
    const every = Math.max(100, Math.floor(Math.min(this.timing.durationMs / 3, this.timing.stepMs / 4)));
    this.timer = setInterval(() => void this.tick(), every);
  }

  /** Not knowing who holds the Leases must not keep the mesh down (e.g. the Role is missing): leaders by rank. */
  private listFailed(err: unknown): undefined {
    this.o.log.debug(`lease watch: ${describeApiError(err)}`);
    if (this.listed) return undefined;
    this.listed = true;
    this.o.log.warning(
      `cannot list the location leader Leases in namespace ${escapeUnsafe(this.o.namespace)} (${describeApiError(err)}): ` +
        'leaders are chosen by rank until they can be read',
    );
    this.o.onChange();
    return undefined;
  }

  /** Final: a write still in flight, or a timer it would arm, acts no more. */
  stop(): void {
    this.stopped = true;
    this.reflector?.stop();
    clearInterval(this.timer);
    clearTimeout(this.expiry);
  }

  /**
   * True once the Leases were listed (or listing them failed): before that, a node that just
   * started cannot tell a location's live leader from none, and would lead by rank.
   */
  known(): boolean {
    return this.listed;
  }

  /** Who the Leases show alive, and who stopped, by location (judged with `[mesh] leader_lease`). */
  liveness(): Liveness {
    return livenessOf(this.book, this.now(), this.timing.durationMs);
  }

  /** Reads the Leases without ever writing one (a host outside the cluster that follows the leaders: `connect`). */
  follow(): void {
    if (!this.reflector) this.begin();
  }

  /** What this node wants (undefined: granularity is not `location`: it takes no Lease). */
  want(wish: LeaderWish | undefined): void {
    if (this.stopped) return;
    const leaderChanged = wish?.leader !== this.wish?.leader;
    this.wish = wish;
    if (wish && !this.reflector) this.begin();
    // A new verdict is acted on at once, not at the next tick.
    else if (wish && leaderChanged) setImmediate(() => void this.tick());
  }

  private take(l: LeaseObject): void {
    const location = l.metadata.annotations?.[LEASE_LOCATION_ANNOTATION];
    // A Lease whose name is not its location's hash is not one of ours: ignored.
    if (!location || leaseName(location) !== l.metadata.name) return;
    this.objects.set(location, l);
    recordLease(
      this.book,
      { location, holder: l.spec.holderIdentity || undefined, renewTime: l.spec.renewTime },
      this.now(),
    );
  }

  private forget(location: string): void {
    this.objects.delete(location);
    forgetLease(this.book, location);
  }

  /** Reports a change, and arranges to report again when the next alive writer lapses. */
  private changed(): void {
    if (this.stopped) return;
    this.o.onChange();
    clearTimeout(this.expiry);
    const next = nextLapse(this.book, this.now(), this.timing.durationMs);
    if (next !== undefined) this.expiry = setTimeout(() => this.changed(), Math.max(10, next - this.now() + 5));
  }

  /** One leadership step: writes the Lease when the pure rules say so. */
  private async tick(): Promise<void> {
    const wish = this.wish;
    if (!wish || this.writing || this.stopped) return;
    const turn = leaseTurn({
      wish,
      self: this.o.self,
      lease: this.book.leases.get(wish.location),
      now: this.now(),
      timing: this.timing,
      lastWriteAt: this.lastWrite,
      vacantSince: this.vacantSince ?? vacancyStart(this.book, wish.location, this.now(), this.timing.durationMs),
    });
    this.vacantSince = turn.vacantSince;
    if (turn.write) await this.write(wish.location, turn.write);
  }

  /** Creates or replaces the Lease with this node as holder; a lost race is not an error. */
  private async write(location: string, w: { take: boolean; why: string }): Promise<void> {
    const current = this.objects.get(location);
    const now = this.now();
    const lease = leaseObject({
      location,
      namespace: this.o.namespace,
      self: this.o.self,
      seconds: this.o.leaseSeconds,
      now,
      take: w.take,
      current,
    });
    this.writing = true;
    try {
      const written = current ? await this.o.api.replace(lease) : await this.o.api.create(lease);
      this.lastWrite = now;
      if (w.take)
        this.o.log.notice(`took the leader Lease of location ${locationName(location)} ${escapeUnsafe(w.why)}`);
      this.vacantSince = undefined;
      this.take(written);
      this.changed();
    } catch (err) {
      if (httpStatus(err) === 409) this.o.log.debug(`leader Lease of ${location}: another node wrote it first`);
      else
        this.o.log.warning(
          `cannot ${w.take ? 'take' : 'renew'} the leader Lease of location ${locationName(location)}: ${describeApiError(err)}`,
        );
    } finally {
      this.writing = false;
    }
  }
}

/** The Lease object this node writes for a location (renewing or taking `current`). */
function leaseObject(o: {
  location: string;
  namespace: string;
  self: string;
  seconds: number;
  now: number;
  take: boolean;
  current: LeaseObject | undefined;
}): LeaseObject {
  const { current, now } = o;
  return {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: {
      name: leaseName(o.location),
      namespace: o.namespace,
      labels: { [LEASE_LABEL]: LEASE_LABEL_VALUE },
      annotations: { [LEASE_LOCATION_ANNOTATION]: o.location },
      ...(current?.metadata.resourceVersion ? { resourceVersion: current.metadata.resourceVersion } : {}),
    },
    spec: {
      holderIdentity: o.self,
      leaseDurationSeconds: o.seconds,
      acquireTime: o.take ? microTime(now) : (current?.spec.acquireTime ?? microTime(now)),
      renewTime: microTime(now),
      leaseTransitions: (current?.spec.leaseTransitions ?? 0) + (o.take && current ? 1 : 0),
    },
  };
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
 * Who the location Leases show alive, as an operator command sees them (one read, no watch): a
 * holder is alive when its Lease was renewed within `leaseSeconds` (`[mesh] leader_lease`, never
 * the Lease's own duration) by this machine's clock — the same rule the daemon applies to the
 * writes it sees.
 */
export async function readLiveness(api: LeaseApi, leaseSeconds: number, now: number = Date.now()): Promise<Liveness> {
  const book = newLeaseBook();
  const page = await api.list({});
  for (const raw of page.items ?? []) {
    if (!isLease(raw)) continue;
    const location = raw.metadata.annotations?.[LEASE_LOCATION_ANNOTATION];
    const holder = raw.spec.holderIdentity;
    const renewed = Date.parse(raw.spec.renewTime ?? '');
    if (!location || !holder || leaseName(location) !== raw.metadata.name || !Number.isFinite(renewed)) continue;
    recordLease(book, { location, holder, renewTime: raw.spec.renewTime }, renewed);
  }
  return livenessOf(book, now, leaseSeconds * 1000);
}
