/**
 * A NAT router for end-to-end tests: a test node between an inside network (a bridge of its own,
 * 203.0.113.0/24 by default) and an outside underlay, masquerading what the inside sends out
 * (nftables, source ports kept when free) and forwarding from the outside only the replies of
 * connections the inside opened (each direction counted) — a home router: nodes inside reach the outside, nothing outside
 * reaches them first. Needs `nft` (Debian package nftables).
 */
import { TestNode } from './netns.js';
import { Underlay } from './underlay.js';

/** Options of {@link NatRouter.create}. */
export interface NatRouterOptions {
  /** IPv4 subnet of the inside network (default 203.0.113.0/24); the router takes its first address. */
  insideSubnet?: string;
  /** A readable name (default `nat`). */
  label?: string;
}

/** A masquerading IPv4 router between an inside network and an outside underlay. */
export class NatRouter {
  private constructor(
    /** The router itself (its outside leg is eth0, its inside leg eth1). */
    readonly host: TestNode,
    /** The inside network, to attach nodes behind the router (give them `insideAddress` as their gateway). */
    readonly inside: Underlay,
    /** The router's address on the outside underlay: what the outside sees inside nodes arrive from. */
    readonly outsideAddress: string,
    /** The router's address on the inside network: the inside nodes' default gateway. */
    readonly insideAddress: string,
  ) {}

  /** Creates the router on `outside`, its inside network, forwarding and the nftables ruleset. */
  static async create(outside: Underlay, opts: NatRouterOptions = {}): Promise<NatRouter> {
    const subnet = opts.insideSubnet ?? '203.0.113.0/24';
    const [net, len] = subnet.split('/');
    const insideAddress = `${net!.split('.').slice(0, 3).join('.')}.1`;
    const host = await TestNode.create({ label: opts.label ?? 'nat' });
    let inside: Underlay | undefined;
    try {
      const outsideAddress = await outside.attach(host);
      inside = await Underlay.create({ subnet: `${net}/${len}` });
      await inside.attach(host, { address: insideAddress, ifname: 'eth1' });
      await host.sysctl('net.ipv4.ip_forward', '1');
      await host.exec('nft', ['-f', '-'], {
        input: [
          'table ip wgo_nat {',
          '  chain postrouting {',
          '    type nat hook postrouting priority srcnat; policy accept;',
          '    oifname "eth0" masquerade',
          '  }',
          '  chain forward {',
          '    type filter hook forward priority filter; policy drop;',
          '    iifname "eth1" oifname "eth0" counter accept',
          '    iifname "eth0" oifname "eth1" ct state established,related counter accept',
          '  }',
          '}',
        ].join('\n'),
      });
      return new NatRouter(host, inside, outsideAddress, insideAddress);
    } catch (err) {
      await host.destroy().catch(() => undefined);
      await inside?.destroy().catch(() => undefined);
      throw err;
    }
  }

  /** Packets the router forwarded so far: out of the inside network, and replies back into it. */
  async forwarded(): Promise<{ out: number; in: number }> {
    const r = await this.host.exec('nft', ['-j', 'list', 'chain', 'ip', 'wgo_nat', 'forward']);
    const rules = (
      JSON.parse(r.stdout) as { nftables: Array<{ rule?: { expr: Array<Record<string, unknown>> } }> }
    ).nftables
      .filter((x) => x.rule)
      .map((x) => x.rule!);
    const packets = (i: number): number =>
      (rules[i]?.expr.find((e) => 'counter' in e)?.counter as { packets: number } | undefined)?.packets ?? 0;
    return { out: packets(0), in: packets(1) };
  }

  /** Destroys the router and its inside network (nodes attached inside should be removed first). */
  async destroy(): Promise<void> {
    await this.host.destroy();
    await this.inside.destroy();
  }
}
