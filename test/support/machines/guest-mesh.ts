/**
 * Mesh nodes inside a kernel-tier VM (kernel-vm.ts), built with `ip` through the VM's agent. A
 * node is either the VM's own network namespace (where systemd runs the packaged
 * wg-overlay.service) or a network namespace of its own joined to the VM's bridge br0; each has
 * a cni0 pod bridge and one pod namespace behind it, like the e2e tier's nodes (netns.ts,
 * pods.ts) but inside the VM. Namespace nodes run `wg-overlay run` as transient systemd units
 * with no D-Bus, so they create their WireGuard link themselves.
 */
import { parseDump } from '../../../service/src/host/device.js';
import type { InterfaceStatus } from '../../../service/src/mesh/observations/device.js';
import type { KernelVm } from './kernel-vm.js';
import type { RunOptions, RunResult } from '../process.js';

/** Options of {@link GuestNode.create}. */
export interface GuestNodeSpec {
  /** The Node object's name (and the namespace's, for a namespace node). */
  name: string;
  /** False: the VM's own network namespace (its br0 address is the node's); true: a namespace of its own on br0. */
  ownNamespace: boolean;
  /** The node's underlay address (without prefix length). */
  address: string;
  /** Prefix length of the underlay. */
  prefixLength: number;
  /** The Node's PodCIDR, an IPv4 /24: the pod gateway is .1, the pod .10. */
  podCidr: string;
  /** The WireGuard interface the node's daemon manages. */
  iface: string;
  /** MTU of the node's underlay link (default 1500). */
  mtu?: number;
}

/** A WireGuard link as `ip -d -j link` shows it. */
export interface GuestLink {
  ifindex: number;
  /** `wireguard` for kernel WireGuard, `tun` for wireguard-go. */
  kind: string | undefined;
  mtu: number;
}

/** One node of a mesh inside the VM. */
export class GuestNode {
  /** The network namespace, undefined for the VM's own. */
  readonly netns: string | undefined;
  /** The pod's network namespace. */
  readonly podNetns: string;
  readonly podIp: string;
  readonly gatewayIp: string;
  /** The transient unit running a namespace node's daemon. */
  readonly unit: string;

  private constructor(
    private readonly vm: KernelVm,
    readonly spec: GuestNodeSpec,
  ) {
    this.netns = spec.ownNamespace ? spec.name : undefined;
    this.podNetns = `${spec.name}-pod`;
    const base = spec.podCidr.split('/')[0]!.split('.').slice(0, 3).join('.');
    this.gatewayIp = `${base}.1`;
    this.podIp = `${base}.10`;
    this.unit = `wgk-daemon-${spec.name}`;
  }

  get name(): string {
    return this.spec.name;
  }

  /** Creates the node's namespace (if it has one), its pod bridge and pod; turns on forwarding. */
  static async create(vm: KernelVm, spec: GuestNodeSpec): Promise<GuestNode> {
    const n = new GuestNode(vm, spec);
    const ns = n.netns ? `-n ${n.netns} ` : '';
    const mtu = spec.mtu ?? 1500;
    const lines = ['set -eu'];
    if (n.netns) {
      lines.push(
        `ip netns add ${n.netns}`,
        `ip link add v-${spec.name} mtu ${mtu} type veth peer name eth0 mtu ${mtu} netns ${n.netns}`,
        `ip link set v-${spec.name} master br0 up`,
        `ip ${ns}addr add ${spec.address}/${spec.prefixLength} dev eth0`,
        `ip ${ns}link set eth0 up`,
        `ip ${ns}link set lo up`,
      );
    }
    lines.push(
      `${n.netns ? `ip netns exec ${n.netns} ` : ''}sysctl -q -w net.ipv4.ip_forward=1`,
      `ip ${ns}link add cni0 type bridge stp_state 0 forward_delay 0`,
      `ip ${ns}link set cni0 up`,
      `ip ${ns}addr add ${n.gatewayIp}/24 dev cni0`,
      `ip netns add ${n.podNetns}`,
      `ip ${ns}link add p-${spec.name} type veth peer name eth0 netns ${n.podNetns}`,
      `ip ${ns}link set p-${spec.name} master cni0 up`,
      `ip -n ${n.podNetns} addr add ${n.podIp}/24 dev eth0`,
      `ip -n ${n.podNetns} link set eth0 up`,
      `ip -n ${n.podNetns} link set lo up`,
      `ip -n ${n.podNetns} route add default via ${n.gatewayIp}`,
    );
    await vm.sh(lines.join('\n'), { label: `${vm.name}/${spec.name}` });
    return n;
  }

  /** The command line that runs `cmd` in the node's namespace. */
  private wrap(netns: string | undefined, cmd: string, args: readonly string[]): [string, string[]] {
    return netns ? ['ip', ['netns', 'exec', netns, cmd, ...args]] : [cmd, [...args]];
  }

  /** Runs a command in the node's network namespace. */
  exec(cmd: string, args: readonly string[] = [], opts: RunOptions = {}): Promise<RunResult> {
    const [c, a] = this.wrap(this.netns, cmd, args);
    return this.vm.exec(c, a, { label: `${this.vm.name}/${this.name}`, ...opts });
  }

  /** Runs a command in the node's pod. */
  podExec(cmd: string, args: readonly string[] = [], opts: RunOptions = {}): Promise<RunResult> {
    const [c, a] = this.wrap(this.podNetns, cmd, args);
    return this.vm.exec(c, a, { label: `${this.vm.name}/${this.name}/pod`, ...opts });
  }

  /** The node's WireGuard link; undefined when it does not exist. */
  async link(): Promise<GuestLink | undefined> {
    const r = await this.exec('ip', ['-d', '-j', 'link', 'show', 'dev', this.spec.iface], { allowFailure: true });
    if (r.exitCode !== 0) return undefined;
    const info = (
      JSON.parse(r.stdout) as Array<{ ifindex: number; mtu: number; linkinfo?: { info_kind?: string } }>
    )[0];
    return info ? { ifindex: info.ifindex, kind: info.linkinfo?.info_kind, mtu: info.mtu } : undefined;
  }

  /** The node's WireGuard device as `wg show <if> dump` reports it; undefined when missing. */
  async device(): Promise<InterfaceStatus | undefined> {
    const r = await this.exec('wg', ['show', this.spec.iface, 'dump'], { allowFailure: true });
    return r.exitCode === 0 ? parseDump(this.spec.iface, r.stdout) : undefined;
  }

  /** Destinations of the daemon's own routes (proto 77) and the devices they use. */
  async routes(): Promise<Array<{ dst: string; dev: string }>> {
    const r = await this.exec('ip', ['-j', '-4', 'route', 'show', 'proto', '77']);
    return JSON.parse(r.stdout || '[]') as Array<{ dst: string; dev: string }>;
  }

  /**
   * Starts a namespace node's daemon as a transient unit: `wg-overlay run` with its own config,
   * state and WireGuard interface, and a D-Bus address that leads nowhere (so it brings the link
   * up itself, as on a host without systemd). Its log is `journalctl -u <unit>`.
   */
  async startDaemon(kubeconfig: string, extraConfig = ''): Promise<void> {
    if (!this.netns) throw new Error(`${this.name} runs the packaged service: start it with systemctl`);
    const dir = `/var/lib/wgk/${this.name}`;
    const config = [
      '[kubernetes]',
      `kubeconfig = ${kubeconfig}`,
      `node_name = ${this.name}`,
      '[wireguard]',
      `interface = ${this.spec.iface}`,
      `config_file = ${dir}/wireguard/${this.spec.iface}.conf`,
      '[state]',
      `dir = ${dir}`,
      `runtime_dir = /run/wgk/${this.name}`,
      '[log]',
      'level = debug',
      extraConfig,
      '',
    ].join('\n');
    await this.vm.writeFile(`/etc/wgk/${this.name}.conf`, config);
    await this.vm.exec('systemd-run', [
      `--unit=${this.unit}`,
      '--collect',
      '--property=SyslogIdentifier=wg-overlay',
      '--setenv=DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/wgk/no-bus',
      'ip',
      'netns',
      'exec',
      this.netns,
      '/usr/bin/wg-overlay',
      'run',
      '--config',
      `/etc/wgk/${this.name}.conf`,
    ]);
  }

  /** Stops a namespace node's daemon (the mesh stays up, as with the service). */
  async stopDaemon(): Promise<void> {
    await this.vm.exec('systemctl', ['stop', this.unit], { allowFailure: true });
  }
}

/** Parses ping's summary: packets sent and received. */
export function pingCounts(output: string): { sent: number; received: number } {
  const m = /(\d+) packets transmitted, (\d+) received/.exec(output);
  if (!m) throw new Error(`no ping summary in:\n${output}`);
  return { sent: Number(m[1]), received: Number(m[2]) };
}
