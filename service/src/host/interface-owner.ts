/**
 * The interface adapter: keeps the WireGuard interface's address, port, key and MTU as desired,
 * recreating it through whoever owns it — `wg-quick@<if>` over systemd's D-Bus API, the daemon
 * itself (no systemd), or someone else (`create_interface = false`: configured in place, never
 * created or deleted). The owner is chosen once at start. While the interface is known to be as
 * last applied, `set()` reads nothing; after `invalidate()` it reads the link and the device.
 */
import { isDeepStrictEqual } from 'node:util';
import type { CommandRunner } from '../exec/runner.js';
import type { Logger } from '../log/logger.js';
import { driftRepair, interfaceDrift } from '../mesh/desired/diff.js';
import type { InterfaceStatus, LinkStatus } from '../mesh/observations/device.js';
import type { DesiredInterface } from '../mesh/types.js';
import type { UnitController } from '../systemd/units.js';
import { StateReporter } from '../util/backoff.js';
import type { WgQuickConfig } from '../wireguard/wgquick.js';
import { ApplyError, inStep } from './apply-error.js';
import type { AppliedChange } from './change.js';
import { readDevice } from './device.js';
import type { OwnChanges } from './own-changes.js';
import {
  configureLink,
  createLink,
  deleteLink,
  kernelWireGuardError,
  linkImplementation,
  noWireGuardMessage,
  readLink,
  setIPv6Address,
  setLinkUp,
  wireguardGoInstalled,
  type CreatedLink,
  type CreateLinkOptions,
  type Implementation,
  type WireguardGoCheck,
} from './link.js';

/** What the interface is (re)built from: the full wg-quick config, and the file wg-quick reads. */
export interface InterfaceSource {
  /** The whole config, private key included (never logged). */
  config(): WgQuickConfig;
  /** Writes the config file now; resolves whether it is current. */
  writeFile(): Promise<boolean>;
}

/** The outcome of one `set()`. */
export interface InterfaceSetResult {
  /** False while the interface does not exist and someone else must create it. */
  ready: boolean;
  /** True when the interface was (re)created: it holds exactly the config's peers and no routes. */
  recreated: boolean;
  changes: AppliedChange[];
}

/** A (re)created interface: the change to log, and how it was created when the recreator made it itself. */
interface Recreated {
  change: AppliedChange;
  created?: CreatedLink;
}

/** How an interface is brought (back) up with its full config. */
interface Recreator {
  /** Recreates (or creates) the interface; returns the change to log. */
  recreate(link: LinkStatus, source: InterfaceSource, why: string): Promise<Recreated>;
}

/** Through systemd: start or restart `wg-quick@<if>.service`, which reads the config file. */
class WgQuickUnit implements Recreator {
  private readonly iface: string;
  private readonly configFile: string;
  private readonly runner: CommandRunner;
  private readonly hasWireguardGo: WireguardGoCheck;

  constructor(
    private readonly units: UnitController,
    o: RecreatorOptions,
  ) {
    this.iface = o.iface;
    this.configFile = o.configFile;
    this.runner = o.runner;
    this.hasWireguardGo = o.hasWireguardGo;
  }

  async recreate(link: LinkStatus, source: InterfaceSource, why: string): Promise<Recreated> {
    if (!(await source.writeFile()))
      throw new ApplyError(
        'interface',
        `not restarting wg-quick@${this.iface}: ${this.configFile} could not be written`,
      );
    const unit = `wg-quick@${this.iface}.service`;
    try {
      if (link.exists) {
        await this.units.restartUnit(unit);
        return { change: { what: `restarted ${unit} through systemd D-Bus`, why } };
      }
      await this.units.startUnit(unit);
      return { change: { what: `started ${unit} through systemd D-Bus`, why } };
    } catch (err) {
      throw await this.explain(err);
    }
  }

  /**
   * The error of a failed start or restart. wg-quick falls back to wireguard-go when the kernel
   * cannot create the link; when wireguard-go is missing too, the unit only "failed": then the
   * error says what to install instead, in words that stay the same from one retry to the next
   * (a job that failed, systemd's start limit), so that the loop logs it once.
   */
  private async explain(err: unknown): Promise<ApplyError> {
    const msg = err instanceof Error ? err.message : String(err);
    const kernel = await kernelWireGuardError(this.runner).catch(() => undefined);
    if (kernel !== undefined && !(await this.hasWireguardGo())) {
      return new ApplyError(
        'interface',
        `${noWireGuardMessage(kernel)}; wg-quick@${this.iface}.service cannot start (journalctl -u wg-quick@${this.iface}.service)`,
      );
    }
    return new ApplyError('interface', msg, { cause: err });
  }
}

/** Without systemd: the daemon deletes, creates and configures the link itself. */
class DirectLink implements Recreator {
  private readonly runner: CommandRunner;
  private readonly iface: string;
  private readonly how: CreateLinkOptions;

  constructor(o: RecreatorOptions) {
    this.runner = o.runner;
    this.iface = o.iface;
    this.how = { implementation: o.implementation, log: o.log, hasWireguardGo: o.hasWireguardGo };
  }

  async recreate(link: LinkStatus, source: InterfaceSource, why: string): Promise<Recreated> {
    const cfg = source.config();
    return inStep('interface', async () => {
      if (link.exists) await deleteLink(this.runner, this.iface);
      const created = await createLink(this.runner, this.iface, this.how);
      await configureLink(this.runner, this.iface, cfg);
      const how = created.impl === 'kernel' ? 'kernel WireGuard' : 'userspace wireguard-go';
      return {
        change: {
          what: `${link.exists ? 'recreated' : 'created'} ${this.iface} directly (${how}, no systemd) with ${cfg.peers.length} peers`,
          why,
        },
        created,
      };
    });
  }
}

/** `create_interface = false`: someone else owns the interface; configure it in place, never delete it. */
class ExternalLink implements Recreator {
  constructor(
    private readonly runner: CommandRunner,
    private readonly iface: string,
  ) {}

  async recreate(_link: LinkStatus, source: InterfaceSource, why: string): Promise<Recreated> {
    await inStep('interface', () => configureLink(this.runner, this.iface, source.config()));
    return { change: { what: `reconfigured ${this.iface} in place`, why: `${why} (create_interface = false)` } };
  }
}

/** How the interface owner is chosen. */
export interface InterfaceOwnerOptions {
  runner: CommandRunner;
  log: Logger;
  iface: string;
  configFile: string;
  /** False: someone else creates the interface (`create_interface = false`). */
  createInterface: boolean;
  implementation: 'auto' | Implementation;
  /** systemd's units, when a manager answers on D-Bus. */
  units: UnitController | undefined;
  /** Told about the link churn this owner causes, so the monitor does not take it for drift. */
  own?: OwnChanges | undefined;
  /** Whether wireguard-go is installed (default: looked up on this host; tests answer it themselves). */
  hasWireguardGo?: WireguardGoCheck;
}

/** The owner's options with the wireguard-go check settled: what the recreators are made from. */
type RecreatorOptions = InterfaceOwnerOptions & { hasWireguardGo: WireguardGoCheck };

/** Keeps one WireGuard interface as desired, through the owner chosen at start. */
export class InterfaceOwner {
  private readonly recreator: Recreator;
  private readonly reporter = new StateReporter();
  /** The interface as last applied; undefined when it must be read. */
  private applied: DesiredInterface | undefined;
  /** Whether the implementation behind the interface was logged since it was last (re)created. */
  private implementationKnown = false;

  constructor(private readonly o: InterfaceOwnerOptions) {
    const parts = { ...o, hasWireguardGo: o.hasWireguardGo ?? wireguardGoInstalled };
    this.recreator = !o.createInterface
      ? new ExternalLink(o.runner, o.iface)
      : o.units
        ? new WgQuickUnit(o.units, parts)
        : new DirectLink(parts);
  }

  /** Who owns the interface, for the start-up log line. */
  describe(): string {
    if (!this.o.createInterface)
      return `${this.o.iface} is created by someone else (create_interface = false); the daemon configures it in place`;
    return this.o.units
      ? `systemd found on the system bus: interface restarts go through wg-quick@${this.o.iface}.service`
      : `no systemd manager reachable: the daemon brings ${this.o.iface} up and down itself`;
  }

  /** Forgets what the interface holds: the next `set()` reads it. */
  invalidate(): void {
    this.applied = undefined;
  }

  /** Runs an in-place repair of the link, telling the monitor that the churn it causes is the daemon's own. */
  private async inPlace(fn: () => Promise<void>): Promise<void> {
    this.o.own?.expectLinkChurn(2_000);
    try {
      await inStep('interface', fn);
    } finally {
      this.o.own?.linkChurnDone();
    }
  }

  /**
   * Makes the interface match `want`; recreates it when it drifted or when `restartWhy` is given.
   * A repeat with equal input, and no `restartWhy`, runs nothing.
   */
  async set(want: DesiredInterface, source: InterfaceSource, restartWhy?: string): Promise<InterfaceSetResult> {
    if (!restartWhy && this.applied && isDeepStrictEqual(this.applied, want))
      return { ready: true, recreated: false, changes: [] };
    this.applied = undefined;
    const { runner, iface } = this.o;
    const link = await inStep('interface', () => readLink(runner, iface));
    if (!link.exists && !this.o.createInterface) {
      if (this.reporter.changed('iface', 'waiting'))
        this.o.log.notice(`waiting for interface ${iface} to be created by someone else (create_interface = false)`);
      return { ready: false, recreated: false, changes: [] };
    }
    this.reporter.changed('iface', 'present');
    const dev = link.exists ? await inStep('interface', () => readDevice(runner, iface)) : undefined;
    const changes: AppliedChange[] = [];
    const repair = driftRepair(interfaceDrift(want, link, dev));
    if (repair.address6) {
      await this.inPlace(() => setIPv6Address(runner, iface, want.address6, link.addresses));
      changes.push({ what: `IPv6 overlay address ${want.address6 ?? '(none)'} on ${iface}`, why: repair.address6 });
    }
    if (repair.up) {
      await this.inPlace(() => setLinkUp(runner, iface));
      changes.push({ what: `set ${iface} up`, why: repair.up });
    }
    let recreated = false;
    let created: CreatedLink | undefined;
    if (repair.recreate || restartWhy) {
      this.o.own?.expectLinkChurn();
      try {
        const made = await this.recreator.recreate(link, source, repair.recreate ?? restartWhy!);
        changes.push(made.change);
        created = made.created;
        recreated = true;
        this.implementationKnown = false;
        await this.check();
      } finally {
        // Drift after the recreate (a route deleted by someone else) must count again soon.
        this.o.own?.linkChurnDone();
      }
    } else if (!dev) {
      throw new ApplyError('interface', `interface ${iface} is not a WireGuard device (wg show failed)`);
    }
    if (!this.implementationKnown) await this.reportImplementation(recreated, created);
    this.applied = want;
    return { ready: true, recreated, changes };
  }

  /**
   * Logs which implementation backs the interface when that changed (once at start, then after a
   * recreate only if it differs): kernel WireGuard, or wireguard-go and, when this owner just
   * created it, why the kernel was not used. An adopted interface is only read, never probed.
   */
  private async reportImplementation(recreated: boolean, created: CreatedLink | undefined): Promise<void> {
    const { runner, iface, log } = this.o;
    const impl = created?.impl ?? (await linkImplementation(runner, iface));
    this.implementationKnown = true;
    if (!impl || !this.reporter.changed('implementation', impl)) return;
    if (impl === 'kernel') {
      log.info(`${iface} runs on kernel WireGuard`);
      return;
    }
    // wg-quick fell back to wireguard-go by itself: ask the kernel why.
    const why = created
      ? created.kernelError
      : recreated && this.o.units && this.o.createInterface
        ? await kernelWireGuardError(runner)
        : undefined;
    if (why === undefined)
      log.info(`${iface} runs on userspace wireguard-go${created ? ' (implementation = userspace)' : ''}`);
    else
      log.notice(
        `${iface} runs on userspace wireguard-go: kernel WireGuard is not available ` +
          `(ip link add … type wireguard: ${why.replace(/\.$/, '')}); throughput is lower than in the kernel`,
      );
  }

  /** After a recreate: the link must exist and be a WireGuard device. */
  private async check(): Promise<InterfaceStatus> {
    const { runner, iface } = this.o;
    const link = await inStep('interface', () => readLink(runner, iface));
    if (!link.exists) throw new ApplyError('interface', `interface ${iface} is missing after bringing it up`);
    const dev = await inStep('interface', () => readDevice(runner, iface));
    if (!dev) throw new ApplyError('interface', `interface ${iface} is not a WireGuard device (wg show failed)`);
    return dev;
  }
}
