/**
 * The daemon's link to systemd over D-Bus: it starts and restarts units and waits for their jobs,
 * with every step bounded in time.
 */
import dbus from 'dbus-next';
import type { Logger } from '../log/logger.js';
import { describeError } from '../log/logger.js';

const SYSTEMD = 'org.freedesktop.systemd1';
const MANAGER_PATH = '/org/freedesktop/systemd1';
const MANAGER_IFACE = 'org.freedesktop.systemd1.Manager';
const MANAGER: Target = { destination: SYSTEMD, path: MANAGER_PATH, interface: MANAGER_IFACE };
const BUS_DAEMON: Target = {
  destination: 'org.freedesktop.DBus',
  path: '/org/freedesktop/DBus',
  interface: 'org.freedesktop.DBus',
};
// Only systemd's JobRemoved: the bus forwards none of the host's other job and unit traffic to us.
const JOB_REMOVED_MATCH = `type='signal',sender='${SYSTEMD}',path='${MANAGER_PATH}',interface='${MANAGER_IFACE}',member='JobRemoved'`;

// A restart of wg-quick@<if> takes well under a second; these limits only bound the broken cases.
// Together (call + job = 25 s) they stay below wg-overlay.service's TimeoutStopSec=30s, because a
// SIGTERM waits for a reconcile run in progress, which may be waiting for a restart job.
const DEFAULT_CALL_TIMEOUT_MS = 5_000;
const DEFAULT_JOB_TIMEOUT_MS = 20_000;
const DEFAULT_PROBE_TIMEOUT_MS = 2_000;

/** Starts and restarts units. */
export interface UnitController {
  /** Restarts the unit and resolves once its job finished successfully. */
  restartUnit(unit: string): Promise<void>;
  /** Starts the unit and resolves once its job finished successfully. */
  startUnit(unit: string): Promise<void>;
  /** Fails whatever is pending and closes the bus connection. */
  close(): void;
}

/** A failed or timed-out unit operation, carrying the unit and the D-Bus call (or `connect`) it failed in. */
export class UnitError extends Error {
  override readonly name = 'UnitError';

  constructor(
    /** The unit the operation was for, e.g. `wg-quick@wg0.service`. */
    readonly unit: string,
    /** The D-Bus call that failed (`RestartUnit`, `StartUnit`, `Subscribe`, `AddMatch`) or `connect`. */
    readonly call: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Limits and the bus address of a {@link SystemdUnits} link; the defaults suit production. */
export interface SystemdUnitsOptions {
  /** The bus; default `$DBUS_SYSTEM_BUS_ADDRESS`, else the system bus socket. */
  busAddress?: string;
  /** Longest wait for one D-Bus reply, and for (re)connecting plus the Restart/StartUnit reply together (ms, default 5 000). */
  callTimeoutMs?: number;
  /** Longest wait for a job's JobRemoved once systemd accepted the call (ms, default 20 000). */
  jobTimeoutMs?: number;
  /** How long `connect` waits for systemd to answer before deciding there is none (ms, default 2 000). */
  probeTimeoutMs?: number;
}

/** Where a D-Bus method call goes: a bus name, an object path and an interface. */
interface Target {
  destination: string;
  path: string;
  interface: string;
}

/** One D-Bus method call: where it goes, the method, and its arguments with their signature. */
interface MethodCall {
  target: Target;
  member: string;
  signature: string;
  body: unknown[];
  /** The whole operation's time limit, named when no reply comes (the call itself gets what is left of it). */
  budgetMs?: number;
}

/** One restartUnit/startUnit in progress. */
interface Operation {
  verb: 'RestartUnit' | 'StartUnit';
  unit: string;
}

/** A job this link started: known by its path once systemd's reply is seen, until its JobRemoved. */
interface OwnJob {
  op: Operation;
  job?: string;
  result?: string;
  settle?: (result: string) => void;
}

/** A failed D-Bus call (or connection), before it is attributed to an operation's unit. */
class LinkError extends Error {
  constructor(
    readonly call: string,
    readonly detail: string,
    options?: { cause?: unknown },
  ) {
    super(`${call}: ${detail}`, options);
  }
}

/** One connection to the bus; a lost one is never reused. */
interface Connection {
  readonly bus: dbus.MessageBus;
  /** Fails everything waiting on this connection (calls, job waits), with the reason it went away. */
  readonly pending: Set<(cause: Error) => void>;
  /** Restart/StartUnit calls awaiting their reply, by serial. */
  readonly jobCalls: Map<number, OwnJob>;
  /** Resolves once the match rule is in place and systemd accepted Subscribe. */
  ready: Promise<void>;
  /** The bus answered Hello. */
  connected: boolean;
  /** AddMatch and Subscribe succeeded. */
  isReady: boolean;
  lost: boolean;
  /** systemd's unique bus name, from its latest reply; JobRemoved from anyone else is ignored. */
  manager: string | undefined;
}

/** systemd's Manager on the system bus (or `busAddress`), through a link that cannot wedge the daemon. */
export class SystemdUnits implements UnitController {
  // - Every D-Bus call has a timeout, and a whole restartUnit/startUnit lasts at most
  //   callTimeoutMs + jobTimeoutMs: (re)connecting and the method call share the first limit.
  // - dbus-next settles nothing when its socket closes: a killed dbus-daemon shows up only as 'end'
  //   and 'close' on the socket (the MessageBus emits 'error' only at the next write, and never
  //   settles the calls in flight). So the link watches the socket itself as well as the bus's
  //   'error'; either fails every pending call and job wait of that connection at once, with one
  //   warning in the log.
  // - Reconnection is lazy: the next call opens a new connection and subscribes again. The daemon
  //   talks to systemd only to restart its interface, and a failed apply is retried by the
  //   reconciler with backoff anyway; reconnecting then costs milliseconds and needs no background
  //   timer that would spin while the bus is down (e.g. during a dbus upgrade) or outlive close().
  //   Failed reconnection attempts are logged at debug only, so one loss is one warning.
  // - Only the jobs this link started are kept. systemd's reply (carrying the job path) is seen in
  //   the bus's 'message' event, in wire order, before any later JobRemoved, so the job is known
  //   before its signal can arrive even when both come in one read (the call's promise continuation
  //   would run only after both); every other JobRemoved is dropped on arrival.
  private conn: Connection | undefined;
  private closed = false;
  /** A connection was established once and then lost: the next successful one is logged. */
  private wasLost = false;
  private readonly jobs = new Map<string, OwnJob>();
  private readonly address: string;
  private readonly callTimeoutMs: number;
  private readonly jobTimeoutMs: number;

  private constructor(
    private readonly log: Logger,
    options: SystemdUnitsOptions,
  ) {
    this.address =
      options.busAddress ?? (process.env.DBUS_SYSTEM_BUS_ADDRESS || 'unix:path=/var/run/dbus/system_bus_socket');
    this.callTimeoutMs = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    this.jobTimeoutMs = options.jobTimeoutMs ?? DEFAULT_JOB_TIMEOUT_MS;
  }

  /** Connects to the system bus; resolves undefined (and says why at debug) when no systemd answers there within probeTimeoutMs. */
  static async connect(log: Logger, options: SystemdUnitsOptions = {}): Promise<SystemdUnits | undefined> {
    const units = new SystemdUnits(log, options);
    try {
      // AddMatch and Subscribe time out after probeTimeoutMs, whatever the socket does.
      await units.connection(options.probeTimeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS).ready;
      return units;
    } catch (err) {
      log.debug(`no systemd on the system bus (${describeError(err)})`);
      units.close();
      return undefined;
    }
  }

  /** How many jobs this link is waiting for (only its own: a host's other jobs are never kept). */
  get trackedJobs(): number {
    return this.jobs.size;
  }

  restartUnit(unit: string): Promise<void> {
    return this.runJob({ verb: 'RestartUnit', unit });
  }

  startUnit(unit: string): Promise<void> {
    return this.runJob({ verb: 'StartUnit', unit });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.conn) this.drop(this.conn, new Error('the unit controller was closed'));
  }

  private async runJob(op: Operation): Promise<void> {
    const { verb, unit } = op;
    if (this.closed) throw new UnitError(unit, verb, `${verb} ${unit}: the unit controller is closed`);
    // (Re)connecting and the call share one deadline, so the whole operation is bounded by
    // callTimeoutMs + jobTimeoutMs.
    const deadline = Date.now() + this.callTimeoutMs;
    let conn: Connection;
    try {
      conn = this.connection(this.callTimeoutMs);
      await withTimeout(
        conn.ready,
        deadline - Date.now(),
        () => new LinkError('connect', `no connection within ${seconds(this.callTimeoutMs)}`),
      );
    } catch (err) {
      const call = err instanceof LinkError ? err.call : 'connect';
      throw new UnitError(unit, call, `${verb} ${unit}: no usable D-Bus connection to systemd`, { cause: err });
    }

    const own: OwnJob = { op };
    try {
      await this.runCall(conn, own, deadline);
    } finally {
      if (own.job !== undefined && this.jobs.get(own.job) === own) this.jobs.delete(own.job);
    }
  }

  /** Sends the Restart/StartUnit call and waits for its job; `own.job` is set once the reply is seen. */
  private async runCall(conn: Connection, own: OwnJob, deadline: number): Promise<void> {
    const { verb, unit } = own.op;
    let serial: number | undefined;
    let job: string;
    try {
      const reply = await this.call(
        conn,
        { target: MANAGER, member: verb, signature: 'ss', body: [unit, 'replace'], budgetMs: this.callTimeoutMs },
        Math.max(1, deadline - Date.now()),
        (s) => {
          serial = s;
          conn.jobCalls.set(s, own);
        },
      );
      job = String(reply.body[0]);
      own.job = job;
      this.jobs.set(job, own);
    } catch (err) {
      if (!(err instanceof LinkError)) throw new UnitError(unit, verb, `${verb} ${unit}: ${describeError(err)}`);
      throw new UnitError(unit, err.call, `${verb} ${unit}: ${err.detail}`, { cause: err.cause });
    } finally {
      if (serial !== undefined) conn.jobCalls.delete(serial);
    }

    const result = own.result ?? (await this.waitForJob(conn, own, job));
    if (result !== 'done')
      throw new UnitError(unit, verb, `${verb} ${unit}: job ended with result "${result}" (see journalctl -u ${unit})`);
  }

  private waitForJob(conn: Connection, own: OwnJob, job: string): Promise<string> {
    const { verb, unit } = own.op;
    return new Promise<string>((resolve, reject) => {
      const finish = (f: () => void): void => {
        clearTimeout(timer);
        conn.pending.delete(fail);
        own.settle = undefined;
        f();
      };
      /** Ends the wait with a UnitError saying `what` happened to the job. */
      const failWith = (what: string, cause?: Error): void =>
        finish(() => reject(new UnitError(unit, verb, `${verb} ${unit}: ${what}`, cause && { cause })));
      const fail = (cause: Error): void =>
        failWith(`${this.closed ? 'closed' : 'D-Bus connection lost'} while waiting for job ${job}`, cause);
      const timer = setTimeout(
        () => failWith(`job ${job} did not finish within ${seconds(this.jobTimeoutMs)}`),
        this.jobTimeoutMs,
      );
      own.settle = (result) => finish(() => resolve(result));
      if (conn.lost) fail(new Error('the connection closed'));
      else conn.pending.add(fail);
    });
  }

  /** The live connection, or a new one (its `ready` settles within about `timeoutMs`). */
  private connection(timeoutMs: number): Connection {
    if (this.conn && !this.conn.lost) return this.conn;
    let bus: dbus.MessageBus;
    try {
      bus = dbus.sessionBus({ busAddress: this.address });
    } catch (err) {
      throw new LinkError('connect', 'invalid bus address', { cause: err }); // dbus-next parses it at once
    }
    const conn: Connection = {
      bus,
      pending: new Set(),
      jobCalls: new Map(),
      ready: Promise.resolve(),
      connected: false,
      isReady: false,
      lost: false,
      manager: undefined,
    };
    this.conn = conn;

    // The bus's 'error' (a listener must always be there: EventEmitter throws otherwise) and the
    // socket's end/close (dbus-next keeps those to itself: see above) both mean the connection is gone.
    bus.on('error', (err: unknown) => this.drop(conn, err instanceof Error ? err : new Error(String(err))));
    const stream = socketOf(bus);
    stream?.once('end', () => this.drop(conn, new Error('the bus closed the connection')));
    stream?.once('close', () => this.drop(conn, new Error('the connection closed')));
    bus.on('message', (msg: dbus.Message) => this.onMessage(conn, msg));
    bus.on('connect', () => {
      conn.connected = true;
    });

    conn.ready = Promise.all([
      this.call(conn, { target: BUS_DAEMON, member: 'AddMatch', signature: 's', body: [JOB_REMOVED_MATCH] }, timeoutMs),
      this.call(conn, { target: MANAGER, member: 'Subscribe', signature: '', body: [] }, timeoutMs),
    ]).then(
      () => {
        conn.isReady = true;
        if (this.wasLost) {
          this.wasLost = false;
          this.log.info('D-Bus: connected to systemd again');
        }
      },
      (err: unknown) => {
        this.drop(conn, err instanceof Error ? err : new Error(String(err)));
        throw err;
      },
    );
    conn.ready.catch(() => undefined);
    return conn;
  }

  /** Marks a connection lost: fails everything pending on it, closes it, and logs a loss once. */
  private drop(conn: Connection, cause: Error): void {
    if (conn.lost) return;
    conn.lost = true;
    if (this.conn === conn) this.conn = undefined;
    const pending = [...conn.pending];
    conn.pending.clear();
    conn.jobCalls.clear();
    for (const fail of pending) fail(cause);
    try {
      conn.bus.disconnect();
    } catch {
      /* already closed */
    }
    socketOf(conn.bus)?.destroy();
    if (this.closed) return;
    if (conn.isReady) {
      this.wasLost = true;
      const failed =
        pending.length === 0 ? 'no unit call was pending' : `${pending.length} pending unit call(s) failed`;
      this.log.warning(
        `D-Bus: lost the connection to systemd (${describeError(cause)}); ${failed}; the next unit call reconnects`,
      );
    } else {
      this.log.debug(`D-Bus: connecting to systemd failed (${describeError(cause)})`);
    }
  }

  /** Sees every message in wire order, before dbus-next settles a call's promise. */
  private onMessage(conn: Connection, msg: dbus.Message): void {
    if (msg.type === dbus.MessageType.METHOD_RETURN) {
      const own = conn.jobCalls.get(Number(msg.replySerial));
      if (own === undefined) return;
      conn.jobCalls.delete(Number(msg.replySerial));
      // Record the job now: its JobRemoved may be the very next message, handled before the
      // call's promise continuation runs.
      conn.manager = msg.sender;
      const job = msg.body[0];
      if (typeof job === 'string') {
        own.job = job;
        this.jobs.set(job, own);
      }
    } else if (
      msg.type === dbus.MessageType.SIGNAL &&
      msg.member === 'JobRemoved' &&
      msg.interface === MANAGER_IFACE &&
      msg.path === MANAGER_PATH
    ) {
      if (conn.manager !== undefined && msg.sender !== conn.manager) return;
      const [, job, , result] = msg.body as [number, string, string, string];
      const own = this.jobs.get(job);
      if (own === undefined) return; // not ours: nothing is kept
      own.result = String(result);
      own.settle?.(own.result);
    }
  }

  /**
   * One method call with a timeout; fails at once when the connection goes away. `onSent` gets the
   * call's serial synchronously, before any reply can be handled.
   */
  private call(
    conn: Connection,
    method: MethodCall,
    timeoutMs: number,
    onSent?: (serial: number) => void,
  ): Promise<dbus.Message> {
    const { target, member, signature, body } = method;
    return new Promise<dbus.Message>((resolve, reject) => {
      if (conn.lost) {
        reject(new LinkError(member, 'D-Bus connection lost before the call was sent'));
        return;
      }
      const msg = new dbus.Message({ ...target, member, signature, body });
      const finish = (f: () => void): void => {
        clearTimeout(timer);
        conn.pending.delete(lost);
        f();
      };
      // A connection that never got through to the bus is a connect failure, whichever call was first.
      const lost = (cause: Error): void =>
        finish(() =>
          reject(
            this.closed
              ? new LinkError(member, 'closed before the reply', { cause })
              : conn.connected
                ? new LinkError(member, 'D-Bus connection lost before the reply', { cause })
                : new LinkError('connect', `cannot reach the bus at ${this.address}`, { cause }),
          ),
        );
      const timer = setTimeout(() => {
        forgetReply(conn.bus, msg.serial);
        finish(() => reject(new LinkError(member, `no reply within ${seconds(method.budgetMs ?? timeoutMs)}`)));
      }, timeoutMs);
      conn.pending.add(lost);
      conn.bus.call(msg).then(
        (reply) =>
          finish(() => {
            if (reply && target === MANAGER) conn.manager = reply.sender;
            if (reply) resolve(reply);
            else reject(new LinkError(member, 'no reply'));
          }),
        (err: unknown) =>
          finish(() =>
            reject(new LinkError(member, err instanceof dbus.DBusError ? 'refused' : 'failed', { cause: err })),
          ),
      );
      if (msg.serial !== null) onSent?.(msg.serial);
    });
  }
}

/** Races `p` against a timer. */
function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(onTimeout()), Math.max(0, ms));
    }),
  ]).finally(() => clearTimeout(timer));
}

/** The socket under a dbus-next MessageBus (not in its typings; absent if the library changes). */
function socketOf(bus: dbus.MessageBus): (NodeJS.ReadWriteStream & { destroy(): void }) | undefined {
  const stream = (bus as unknown as { _connection?: { stream?: unknown } })._connection?.stream;
  return stream && typeof (stream as { once?: unknown }).once === 'function'
    ? (stream as NodeJS.ReadWriteStream & { destroy(): void })
    : undefined;
}

/** Drops dbus-next's handler for a reply that will not be waited for, so it cannot pile up. */
function forgetReply(bus: dbus.MessageBus, serial: number | null): void {
  const handlers = (bus as unknown as { _methodReturnHandlers?: Record<number, unknown> })._methodReturnHandlers;
  if (serial !== null && handlers) delete handlers[serial];
}

/** `5 s`, or `250 ms` below a second. */
function seconds(ms: number): string {
  return ms >= 1000 && ms % 1000 === 0 ? `${ms / 1000} s` : ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${ms} ms`;
}
