/**
 * The host adapters as a state table, in the style of Tailscale's router tests: a list of desired
 * states, each with the exact host state expected after `set()`. The table is walked in seeded
 * random orders (with and without a forced re-read between steps), and after every step the
 * simulated host equals the expected state — no leftovers, no duplicates, other owners' routes
 * untouched — and a repeat of the same input runs no command.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FirewallAdapter } from '../../../service/src/host/firewall-adapter.js';
import { InterfaceOwner, type InterfaceSource } from '../../../service/src/host/interface-owner.js';
import { PeerAdapter } from '../../../service/src/host/peer-adapter.js';
import { RouteAdapter } from '../../../service/src/host/route-adapter.js';
import { memoryLogger } from '../../../service/src/log/logger.js';
import type { DesiredFirewall } from '../../../service/src/mesh/desired/firewall.js';
import type { DesiredInterface, DesiredPeer, DesiredRoute, DesiredState } from '../../../service/src/mesh/types.js';
import { toWgQuickConfig } from '../../../service/src/wireguard/conf.js';
import { generatePrivateKey, publicKeyFromPrivate } from '../../../service/src/wireguard/keys.js';
import { FakeHost } from '../../support/fakes/host.js';
import { KEYS } from '../../support/fakes/fixtures.js';
import { rng } from '../../support/fakes/random.js';

const PRIV = generatePrivateKey();
const PUB = publicKeyFromPrivate(PRIV);
const FOREIGN = { dst: '10.99.0.0/16', dev: 'eth0', protocol: 'boot' };

/** One row: what is wanted, and what the host must hold afterwards. */
interface Row {
  name: string;
  iface: DesiredInterface;
  peers: DesiredPeer[];
  routes: DesiredRoute[];
  /** Expected peers: `key endpoint allowed-ips keepalive`, sorted. */
  wantPeers: string[];
  /** Expected routes: `dst dev proto`, sorted (other owners' routes included). */
  wantRoutes: string[];
  /** The fail-closed rule set (default: on, the overlay and the routes' ranges blocked, no hops). */
  firewall?: DesiredFirewall;
  /** Expected elements of the daemon's nft table, `set element`, sorted (absent: `carried4` of the routes and the overlay). */
  wantNft?: string[] | 'no table';
}

const iface = (address: string, listenPort = 51820, mtu = 1420): DesiredInterface => ({
  name: 'wg0',
  address,
  listenPort,
  mtu,
  publicKey: PUB,
});
const peer = (
  name: string,
  key: string,
  endpoint: string | undefined,
  allowedIPs: string[],
  keepalive = 0,
): DesiredPeer => ({ kind: 'node', name, publicKey: key, endpoint, allowedIPs, persistentKeepalive: keepalive });
const routes = (via: string, ...dst: string[]): DesiredRoute[] => dst.map((d) => ({ dst: d, dev: 'wg0', via }));
const P = (key: string, endpoint: string, ips: string, keepalive = 0): string =>
  `${key} ${endpoint} ${ips} ${keepalive}`;
const R = (dst: string): string => `${dst} wg0 77`;
const OTHER = `${FOREIGN.dst} ${FOREIGN.dev} ${FOREIGN.protocol}`;

/** The rule set blocking the overlay and `blocked` (`dst owner`) for interface `name`. */
const fw = (name: string, ...blocked: string[]): DesiredFirewall => ({
  enabled: true,
  iface: name,
  blocked: ['100.64.0.0/10 overlay', ...blocked].map((b) => ({
    dst: b.split(' ')[0]!,
    reason: 'carried',
    owner: b.split(' ')[1]!,
    what: '',
  })),
  hops: [],
  endpoints: [],
  exempt: [{ dst: '169.254.0.0/16', kind: 'link-local', what: '' }],
});

const TABLE: Row[] = [
  {
    name: 'empty mesh',
    iface: iface('100.64.2.11/10'),
    peers: [],
    routes: [],
    wantPeers: [],
    wantRoutes: [OTHER],
  },
  {
    name: 'one node',
    iface: iface('100.64.2.11/10'),
    peers: [peer('b', KEYS[1], '192.0.2.12:51820', ['10.244.2.0/24', '100.64.2.12/32'])],
    routes: routes('b', '10.244.2.0/24'),
    wantPeers: [P(KEYS[1], '192.0.2.12:51820', '10.244.2.0/24,100.64.2.12/32')],
    wantRoutes: [OTHER, R('10.244.2.0/24')],
  },
  {
    name: 'two nodes, dual stack',
    iface: iface('100.64.2.11/10'),
    peers: [
      peer('b', KEYS[1], '192.0.2.12:51820', ['10.244.2.0/24', '100.64.2.12/32']),
      peer('c', KEYS[2], '192.0.2.13:51820', ['10.244.3.0/24', '100.64.2.13/32', 'fd00:10:244:3::/64']),
    ],
    routes: [...routes('b', '10.244.2.0/24'), ...routes('c', '10.244.3.0/24', 'fd00:10:244:3::/64')],
    wantPeers: [
      P(KEYS[1], '192.0.2.12:51820', '10.244.2.0/24,100.64.2.12/32'),
      P(KEYS[2], '192.0.2.13:51820', '10.244.3.0/24,100.64.2.13/32,fd00:10:244:3::/64'),
    ],
    wantRoutes: [OTHER, R('10.244.2.0/24'), R('10.244.3.0/24'), R('fd00:10:244:3::/64')],
  },
  {
    name: 'b moved its PodCIDR and endpoint, c keeps alive',
    iface: iface('100.64.2.11/10'),
    peers: [
      peer('b', KEYS[1], '198.51.100.12:51821', ['10.244.20.0/24', '100.64.2.12/32']),
      peer('c', KEYS[2], '192.0.2.13:51820', ['10.244.3.0/24', '100.64.2.13/32'], 25),
    ],
    routes: [...routes('b', '10.244.20.0/24'), ...routes('c', '10.244.3.0/24')],
    wantPeers: [
      P(KEYS[1], '198.51.100.12:51821', '10.244.20.0/24,100.64.2.12/32'),
      P(KEYS[2], '192.0.2.13:51820', '10.244.3.0/24,100.64.2.13/32', 25),
    ],
    wantRoutes: [OTHER, R('10.244.20.0/24'), R('10.244.3.0/24')],
  },
  {
    name: 'a range someone else routes is left to them',
    iface: iface('100.64.2.11/10'),
    peers: [peer('d', KEYS[3], '192.0.2.14:51820', ['10.99.0.0/16', '100.64.2.14/32'])],
    routes: routes('d', '10.99.0.0/16'),
    wantPeers: [P(KEYS[3], '192.0.2.14:51820', '10.99.0.0/16,100.64.2.14/32')],
    wantRoutes: [OTHER],
  },
  {
    name: 'new overlay address and port: the interface is recreated',
    iface: iface('100.64.9.9/10', 51999),
    peers: [peer('b', KEYS[1], '192.0.2.12:51820', ['10.244.2.0/24', '100.64.2.12/32'])],
    routes: routes('b', '10.244.2.0/24'),
    wantPeers: [P(KEYS[1], '192.0.2.12:51820', '10.244.2.0/24,100.64.2.12/32')],
    wantRoutes: [OTHER, R('10.244.2.0/24')],
  },
  {
    name: 'a Node deleted: its range kept, a location hop and an endpoint let through',
    iface: iface('100.64.2.11/10'),
    peers: [peer('b', KEYS[1], '192.0.2.12:51820', ['10.244.2.0/24', '100.64.2.12/32'])],
    routes: routes('b', '10.244.2.0/24'),
    wantPeers: [P(KEYS[1], '192.0.2.12:51820', '10.244.2.0/24,100.64.2.12/32')],
    wantRoutes: [OTHER, R('10.244.2.0/24')],
    firewall: {
      ...fw('wg0', '10.244.2.0/24 b'),
      blocked: [
        ...fw('wg0', '10.244.2.0/24 b', '10.5.0.1/32 laptop').blocked,
        { dst: '10.244.3.0/24', reason: 'kept', owner: 'c', what: '' },
      ],
      hops: ['192.0.2.12'],
      endpoints: ['192.0.2.12:51820'],
    },
    wantNft: [
      'carried4 10.244.2.0/24 comment "b"',
      'carried4 10.5.0.1/32 comment "laptop"',
      'carried4 100.64.0.0/10 comment "overlay"',
      'endpoints4 192.0.2.12 . 51820',
      'exempt4 169.254.0.0/16 comment "link-local"',
      'hops4 192.0.2.12',
      'kept4 10.244.3.0/24 comment "c"',
    ],
  },
  {
    name: 'fail_closed = off: the table is gone',
    iface: iface('100.64.2.11/10'),
    peers: [],
    routes: [],
    wantPeers: [],
    wantRoutes: [OTHER],
    firewall: { enabled: false, iface: 'wg0', blocked: [], hops: [], endpoints: [], exempt: [] },
    wantNft: 'no table',
  },
];

/** The rule set a row wants. */
function firewallOf(row: Row): DesiredFirewall {
  return row.firewall ?? fw('wg0', ...row.routes.map((r) => `${r.dst} ${r.via}`));
}

/** The adapters over one simulated host, as the reconcile step drives them. */
function adapters(host: FakeHost) {
  const log = memoryLogger();
  const dir = mkdtempSync(join(tmpdir(), 'wgo-table-'));
  const owner = new InterfaceOwner({
    runner: host.runner,
    log,
    iface: 'wg0',
    configFile: join(dir, 'wg0.conf'),
    createInterface: true,
    implementation: 'userspace',
    units: undefined,
    hasWireguardGo: host.hasWireguardGo,
  });
  const peers = new PeerAdapter(host.runner, 'wg0');
  const routesAdapter = new RouteAdapter(host.runner, log);
  const firewall = new FirewallAdapter(host.runner, dir);
  const set = async (row: Row): Promise<void> => {
    const desired: DesiredState = {
      iface: row.iface,
      peers: row.peers,
      routes: row.routes,
      skipped: [],
      addresses: new Map(),
      publish: {},
      warnings: [],
    };
    const source: InterfaceSource = { config: () => toWgQuickConfig(desired, PRIV), writeFile: async () => true };
    await firewall.set(firewallOf(row));
    const i = await owner.set(row.iface, source);
    if (i.recreated) {
      peers.reset();
      routesAdapter.invalidate();
    }
    assert.deepEqual((await peers.set(row.peers)).refused, []);
    const r = await routesAdapter.set(row.routes);
    if (r.clash) {
      // what the loop does: a forced run that reads the table
      routesAdapter.invalidate();
      await routesAdapter.set(row.routes);
    }
  };
  const invalidate = (): void => {
    owner.invalidate();
    peers.invalidate();
    routesAdapter.invalidate();
    firewall.invalidate();
  };
  return { set, invalidate };
}

/** The daemon's nft table as `set element` lines, sorted; and the other owners' tables. */
function nftState(host: FakeHost): { nft: string[] | 'no table'; others: string[] } {
  const nft = host.nft
    ? [...host.nft.sets].flatMap(([name, set]) => [...set].map((e) => `${name} ${e}`)).sort()
    : ('no table' as const);
  return { nft, others: [...host.nftOthers] };
}

function hostState(host: FakeHost): {
  link: string;
  peers: string[];
  routes: string[];
  nft: string[] | 'no table';
  others: string[];
} {
  return {
    ...nftState(host),
    link: `${host.link.exists ? 'up' : 'missing'} ${host.link.addresses.join(',')} port ${host.listenPort} mtu ${host.link.mtu}`,
    peers: [...host.peers.values()]
      .map((p) => P(p.publicKey, p.endpoint ?? '(none)', [...p.allowedIPs].sort().join(','), p.keepalive))
      .sort(),
    routes: host.routes.map((r) => `${r.dst} ${r.dev} ${r.protocol}`).sort(),
  };
}

function expected(row: Row): {
  link: string;
  peers: string[];
  routes: string[];
  nft: string[] | 'no table';
  others: string[];
} {
  const carried = ['100.64.0.0/10 comment "overlay"', ...row.routes.map((r) => `${r.dst} comment "${r.via}"`)];
  return {
    nft:
      row.wantNft ??
      [
        ...carried.map((e) => `carried${e.includes(':') ? 6 : 4} ${e}`),
        'exempt4 169.254.0.0/16 comment "link-local"',
      ].sort(),
    others: ['inet filter'],
    link: `up ${row.iface.address} port ${row.iface.listenPort} mtu ${row.iface.mtu}`,
    peers: row.wantPeers
      .map((p) => {
        const [k, e, ips, ka] = p.split(' ');
        return P(k!, e!, ips!.split(',').sort().join(','), Number(ka));
      })
      .sort(),
    routes: [...row.wantRoutes].sort(),
  };
}

describe('unit: host adapters as a state table', () => {
  for (const seed of [1, 2, 3, 42, 2026]) {
    for (const reread of [false, true]) {
      it(`seed ${seed}${reread ? ', re-reading the host every step' : ''}: the host matches each row, a repeat runs nothing`, async () => {
        const random = rng(seed);
        const host = new FakeHost();
        host.routes.push({ ...FOREIGN });
        const a = adapters(host);
        const walk = Array.from({ length: 24 }, () => TABLE[Math.floor(random() * TABLE.length)]!);
        for (const [i, row] of walk.entries()) {
          if (reread || random() < 0.2) a.invalidate();
          await a.set(row);
          assert.deepEqual(
            hostState(host),
            expected(row),
            `step ${i} (${row.name}) after ${
              walk
                .slice(0, i)
                .map((r) => r.name)
                .join(' → ') || 'start'
            }`,
          );
          const mark = host.runner.calls.length;
          await a.set(row);
          assert.deepEqual(host.runner.calls.slice(mark), [], `step ${i} (${row.name}): a repeat ran commands`);
        }
      });
    }
  }
});
