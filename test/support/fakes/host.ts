/**
 * A simulated host for reconcile-loop tests: answers the `wg` and `ip` commands the daemon runs
 * from an in-memory model of one WireGuard interface and the main routing table, and records
 * every command through the RecordingRunner.
 */
import { existsSync, readFileSync } from 'node:fs';
import { RecordingRunner } from '../../../service/src/exec/runner.js';
import { guardRules } from '../../../service/src/host/nft-rules.js';
import { publicKeyFromPrivate } from '../../../service/src/wireguard/keys.js';

interface FakePeer {
  publicKey: string;
  endpoint?: string;
  allowedIPs: string[];
  keepalive: number;
}

/** The route `ip -4 route add|replace DST (dev DEV | via GATEWAY) proto P` makes. */
function routeOf(a: readonly string[]): { dst: string; dev: string; gateway?: string; protocol: string } {
  return a[4] === 'via'
    ? { dst: a[3]!, dev: 'eth0', gateway: a[5]!, protocol: a[7]! }
    : { dst: a[3]!, dev: a[5]!, protocol: a[7]! };
}

/** What a command answers. */
type Answer = { stdout?: string; stderr?: string; exitCode?: number };

/** The simulated host's state. */
export class FakeHost {
  /** The interface; `kind` as `ip -d link` shows it (default: `wireguard` with kernel WireGuard, else `tun`). */
  link: { exists: boolean; up: boolean; mtu: number; addresses: string[]; kind?: 'wireguard' | 'tun' } = {
    exists: false,
    up: false,
    mtu: 1420,
    addresses: [],
  };
  privateKey: string | undefined;
  listenPort = 0;
  peers = new Map<string, FakePeer>();
  /** Routes of the main table (one through a next hop leaves by eth0). */
  routes: Array<{ dst: string; dev: string; gateway?: string; protocol: string }> = [];
  kernelWireGuard = false;
  /** Whether `wireguard-go` runs (false: it fails as a missing command does, exit -1). */
  wireguardGoInstalled = true;
  /** Answers the daemon's question whether wireguard-go is installed, from this host. */
  readonly hasWireguardGo = async (): Promise<boolean> => this.wireguardGoInstalled;
  /**
   * nftables: the daemon's table (`inet wg_overlay`: the interface its guard names and its sets'
   * elements as nft writes them), or undefined; other owners' tables by name (never to be touched).
   */
  nft: { iface: string; sets: Map<string, Set<string>> } | undefined;
  readonly nftOthers = new Set<string>(['inet filter']);
  /** `wg set` refuses any command naming one of these peers (like a name that does not resolve), applying nothing. */
  readonly refusePeers = new Set<string>();
  readonly runner: RecordingRunner;

  constructor(readonly iface = 'wg0') {
    this.runner = new RecordingRunner((cmd, args, opts) => {
      // Secrets arrive as files (wg setconf FILE, preshared-key FILE): read them like wg would.
      const file =
        (cmd === 'wg' && args[0] === 'setconf') || (cmd === 'nft' && args[0] === '-f') ? args.at(-1) : undefined;
      return this.handle(cmd, [...args], file && existsSync(file) ? readFileSync(file, 'utf8') : opts.input);
    });
  }

  /** Commands that change something (reads filtered out). */
  mutations(): string[] {
    return this.runner.calls.filter((c) => !/^wg show|^ip -j|^nft -j/.test(c));
  }

  private handle(cmd: string, a: string[], input?: string): Answer {
    const answer =
      cmd === 'wg'
        ? this.wg(a, input)
        : cmd === 'wireguard-go'
          ? this.wireguardGo()
          : cmd === 'ip'
            ? (this.ipRead(a) ?? this.ipRoute(a) ?? this.ipLink(a))
            : cmd === 'nft'
              ? this.nftCommand(a, input)
              : undefined;
    return answer ?? { exitCode: 127, stderr: `fake host does not know: ${cmd} ${a.join(' ')}` };
  }

  /** `wg show`, `wg setconf`, `wg set`. */
  private wg(a: string[], input: string | undefined): Answer | undefined {
    if (a[0] === 'show') return this.wgShow();
    if (a[0] === 'setconf') return this.wgSetconf(input);
    if (a[0] === 'set') return this.wgSet(a, input);
    return undefined;
  }

  private wgShow(): Answer {
    if (!this.link.exists) return { exitCode: 1, stderr: 'Unable to access interface: No such device' };
    const pub = this.privateKey ? publicKeyFromPrivate(this.privateKey) : '(none)';
    const lines = [`${this.privateKey ?? '(none)'}\t${pub}\t${this.listenPort}\toff`];
    for (const p of this.peers.values()) {
      lines.push(
        [
          p.publicKey,
          '(none)',
          p.endpoint ?? '(none)',
          p.allowedIPs.join(',') || '(none)',
          '0',
          '0',
          '0',
          p.keepalive ? String(p.keepalive) : 'off',
        ].join('\t'),
      );
    }
    return { stdout: `${lines.join('\n')}\n` };
  }

  private wgSetconf(input: string | undefined): Answer {
    this.peers.clear();
    let cur: FakePeer | undefined;
    for (const line of (input ?? '').split('\n')) {
      const m = /^(\w+)\s*=\s*(.*)$/.exec(line.trim());
      if (line.trim() === '[Peer]') {
        cur = { publicKey: '', allowedIPs: [], keepalive: 0 };
        continue;
      }
      if (!m) continue;
      const [, k, v] = m as unknown as [string, string, string];
      if (k === 'PrivateKey') this.privateKey = v;
      else if (k === 'ListenPort') this.listenPort = Number(v);
      else if (cur && k === 'PublicKey') {
        cur.publicKey = v;
        this.peers.set(v, cur);
      } else if (cur && k === 'Endpoint') cur.endpoint = v;
      else if (cur && k === 'AllowedIPs') cur.allowedIPs = v.split(',').map((s) => s.trim());
      else if (cur && k === 'PersistentKeepalive') cur.keepalive = Number(v);
    }
    return {};
  }

  private wgSet(a: string[], input: string | undefined): Answer {
    const bad = a.find((w, j) => a[j - 1] === 'peer' && this.refusePeers.has(w));
    if (bad) return { exitCode: 1, stderr: "Name or service not known: `bad.invalid:51820'" };
    let i = 2;
    let cur: FakePeer | undefined;
    while (i < a.length) {
      const w = a[i++];
      if (w === 'peer') {
        const k = a[i++]!;
        cur = this.peers.get(k) ?? { publicKey: k, allowedIPs: [], keepalive: 0 };
        this.peers.set(k, cur);
      } else if (w === 'remove' && cur) {
        this.peers.delete(cur.publicKey);
      } else if (w === 'endpoint' && cur) cur.endpoint = a[i++];
      else if (w === 'allowed-ips' && cur) cur.allowedIPs = a[i++]!.split(',').filter(Boolean);
      else if (w === 'persistent-keepalive' && cur) {
        const v = a[i++];
        cur.keepalive = v === 'off' ? 0 : Number(v);
      } else if (w === 'preshared-key') i++;
      else if (w === 'private-key') {
        i++;
        this.privateKey = input?.trim();
      } else if (w === 'listen-port') this.listenPort = Number(a[i++]);
    }
    return {};
  }

  /** `ip -j …` reads of addresses, links and routes. */
  private ipRead(a: string[]): Answer | undefined {
    const dev = this.iface;
    if (a[0] === '-j' && a[1] === 'addr' && a[3] === 'dev') {
      if (a[4] !== dev || !this.link.exists) return { exitCode: 1, stderr: `Device "${a[4]}" does not exist.` };
      return {
        stdout: JSON.stringify([
          {
            ifname: dev,
            mtu: this.link.mtu,
            flags: this.link.up ? ['POINTOPOINT', 'UP'] : ['POINTOPOINT'],
            addr_info: this.link.addresses.map((x) => ({
              local: x.split('/')[0],
              prefixlen: Number(x.split('/')[1]),
              scope: 'global',
            })),
          },
        ]),
      };
    }
    if (a[0] === '-j' && a[1] === '-d' && a[2] === 'link' && a[4] === 'dev') {
      if (a[5] !== dev || !this.link.exists) return { exitCode: 1, stderr: `Device "${a[5]}" does not exist.` };
      return {
        stdout: JSON.stringify([
          {
            ifname: dev,
            mtu: this.link.mtu,
            linkinfo: { info_kind: this.link.kind ?? (this.kernelWireGuard ? 'wireguard' : 'tun') },
          },
        ]),
      };
    }
    if (a[0] === '-j' && a[1] === 'addr') {
      return {
        stdout: JSON.stringify([
          {
            ifname: 'eth0',
            mtu: 1500,
            flags: ['UP'],
            addr_info: [{ local: '192.0.2.11', prefixlen: 24, scope: 'global' }],
          },
        ]),
      };
    }
    if (a[0] === '-j' && a[2] === 'route') {
      const v6 = a[1] === '-6';
      return { stdout: JSON.stringify(this.routes.filter((r) => r.dst.includes(':') === v6)) };
    }
    return undefined;
  }

  /** `ip route add|replace|del`. */
  private ipRoute(a: string[]): Answer | undefined {
    if (a[1] === 'route' && a[2] === 'add') {
      if (this.routes.some((r) => r.dst === a[3])) return { exitCode: 2, stderr: 'RTNETLINK answers: File exists' };
      this.routes.push(routeOf(a));
      return {};
    }
    if (a[1] === 'route' && a[2] === 'replace') {
      this.routes = this.routes.filter((r) => r.dst !== a[3]);
      this.routes.push(routeOf(a));
      return {};
    }
    if (a[1] === 'route' && a[2] === 'del') {
      // like the kernel: a `dev` or `via` given must match too
      const dev = a.indexOf('dev', 4);
      const via = a.indexOf('via', 4);
      this.routes = this.routes.filter(
        (r) =>
          !(
            r.dst === a[3] &&
            r.protocol === a[5] &&
            (dev < 0 || r.dev === a[dev + 1]) &&
            (via < 0 || r.gateway === a[via + 1])
          ),
      );
      return {};
    }
    return undefined;
  }

  /** `wireguard-go`: creates a userspace link, when it is installed. */
  private wireguardGo(): Answer {
    if (!this.wireguardGoInstalled) return { exitCode: -1 };
    this.createLink('tun');
    return { stderr: 'WARNING WARNING WARNING (banner)' };
  }

  /** `ip link add|del|set`, `ip address replace|del`. */
  private ipLink(a: string[]): Answer | undefined {
    const dev = this.iface;
    if (a[0] === 'link' && a[1] === 'add') {
      if (!this.kernelWireGuard) return { exitCode: 2, stderr: 'Error: Unknown device type.' };
      // Another name (the daemon's probe link) comes and goes without touching the interface.
      if (a[3] === dev) this.createLink('wireguard');
      return {};
    }
    if (a[0] === 'link' && a[1] === 'del' && a[3] !== dev) return {};
    if (a[0] === 'link' && a[1] === 'del') {
      this.link = { exists: false, up: false, mtu: 1420, addresses: [] };
      this.peers.clear();
      this.routes = this.routes.filter((r) => r.dev !== dev);
      this.privateKey = undefined;
      return {};
    }
    if (a[0] === 'link' && a[1] === 'set') {
      const m = a.indexOf('mtu');
      if (m >= 0) this.link.mtu = Number(a[m + 1]);
      if (a.includes('up')) this.link.up = true;
      return {};
    }
    if (a[0] === 'address' && a[1] === 'replace') {
      this.link.addresses.push(a[2]!);
      return {};
    }
    if (a[0] === 'address' && a[1] === 'del') {
      this.link.addresses = this.link.addresses.filter((x) => x !== a[2]);
      return {};
    }
    return undefined;
  }

  /** `nft -j list table|counters`, `nft -f FILE`, `nft delete table`, `nft 'add|delete element …'` on `inet wg_overlay`. */
  private nftCommand(a: string[], input: string | undefined): Answer | undefined {
    const table = (t: string): boolean => t === 'inet wg_overlay';
    const missing = {
      exitCode: 1,
      stderr: 'Error: No such file or directory; did you mean table ‘filter’ in family inet?',
    };
    if (a[0] === '-j' && a[1] === 'list' && a[2] === 'table' && table(`${a[3]} ${a[4]}`))
      return this.nft ? { stdout: this.nftJson() } : missing;
    if (a[0] === '-j' && a[1] === 'list' && a[2] === 'counters') return { stdout: '{"nftables": []}' };
    if (a[0] === 'delete' && a[1] === 'table') {
      if (!table(`${a[2]} ${a[3]}`)) this.nftOthers.delete(`${a[2]} ${a[3]}`);
      else if (!this.nft) return missing;
      this.nft = undefined;
      return {};
    }
    const script = a[0] === '-f' ? input : a.length === 1 ? a[0] : undefined;
    return script === undefined ? undefined : this.nftScript(script);
  }

  /** Runs the lines of an nft script the daemon writes, as one transaction. */
  private nftScript(script: string): Answer {
    let next = this.nft
      ? { iface: this.nft.iface, sets: new Map([...this.nft.sets].map(([k, v]) => [k, new Set(v)])) }
      : undefined;
    for (const raw of script.split('\n')) {
      const line = raw.trim();
      if (line.startsWith('delete table inet wg_overlay')) next = undefined;
      else if (line === 'table inet wg_overlay {' || line === 'table inet wg_overlay')
        next ??= { iface: '', sets: new Map() };
      else if (/^set (\w+) \{/.test(line)) next!.sets.set(/^set (\w+)/.exec(line)![1]!, new Set());
      else if (/^oifname \{ "lo", "([^"]+)" \}/.test(line)) next!.iface = /"lo", "([^"]+)"/.exec(line)![1]!;
      else if (/^(add|delete) element inet wg_overlay (\w+) \{ (.*) \}$/.test(line)) {
        const [, verb, name, list] = /^(add|delete) element inet wg_overlay (\w+) \{ (.*) \}$/.exec(line)!;
        const set = next?.sets.get(name!);
        if (!set) return { exitCode: 1, stderr: `Error: No such file or directory (set ${name})` };
        for (const e of list!.split(', ')) {
          const dst = e.replace(/ comment ".*"$/, '');
          const have = [...set].find((x) => x.replace(/ comment ".*"$/, '') === dst);
          if (verb === 'add' && have) return { exitCode: 1, stderr: 'Error: Could not process rule: File exists' };
          if (verb === 'delete' && !have)
            return { exitCode: 1, stderr: 'Error: Could not process rule: No such file or directory' };
          if (verb === 'add') set.add(e);
          else set.delete(have!);
        }
      } else if (line && !line.startsWith('#') && !/^(counter|chain|\}|ip6? |rt |oifname)/.test(line))
        return { exitCode: 1, stderr: `Error: syntax error (fake host does not know: ${line})` };
    }
    this.nft = next;
    return {};
  }

  /** The daemon's table as `nft -j list table` shows it (sets, three chains, the guard's rules). */
  private nftJson(): string {
    const t = this.nft!;
    const elem = (e: string): unknown => {
      const m = /^(\S+)(?: \. (\d+))?(?: comment "(.*)")?$/.exec(e)!;
      if (m[2]) return { concat: [m[1], Number(m[2])] };
      const [addr, len] = m[1]!.split('/');
      // Like nft: a host range of an interval set is listed as the bare address.
      const val = len === undefined || len === '32' || len === '128' ? addr : { prefix: { addr, len: Number(len) } };
      return m[3] === undefined ? val : { elem: { val, comment: m[3], counter: { packets: 0, bytes: 0 } } };
    };
    const items: unknown[] = [{ table: { family: 'inet', name: 'wg_overlay' } }];
    for (const [name, set] of t.sets)
      items.push({
        set: { name, ...(/^(hops|endpoints)/.test(name) ? {} : { flags: ['interval'] }), elem: [...set].map(elem) },
      });
    for (const name of ['guard', 'output', 'forward']) items.push({ chain: { name } });
    const guard = (expr: unknown[]): unknown => ({ rule: { chain: 'guard', expr } });
    items.push(guard([{ match: { left: { meta: { key: 'oifname' } }, right: { set: ['lo', t.iface] } } }]));
    for (let i = 1; i < guardRules(t.iface).length; i++) items.push(guard([{ return: null }]));
    return JSON.stringify({ nftables: items });
  }

  /** Creates the link as `wireguard-go` (`tun`) or `ip link add` (`wireguard`) would (no key, no peers). */
  private createLink(kind: 'wireguard' | 'tun'): void {
    this.link = { exists: true, up: false, mtu: 1420, addresses: [], kind };
    this.privateKey = undefined;
    this.listenPort = 0;
    this.peers.clear();
  }
}
