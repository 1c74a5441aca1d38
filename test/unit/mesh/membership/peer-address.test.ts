/**
 * The address a self-joining Peer (`wg-overlay connect`) takes: stable for a key, in the pool (or
 * the allowed ranges when the pool is not allowed or full), past every claim of any Node or Peer,
 * the named pod networks and what the host avoids; and over seeded random clusters the mesh's own
 * verdict admits every address chosen, without taking anything from anyone.
 */
import assert from 'node:assert/strict';
import {
  choosePeerAddress,
  peerAddressPools,
  peerClaimProblem,
  PEER_POOL4,
  PEER_POOL6,
  type PeerAddressInput,
} from '../../../../service/src/mesh/membership/peer-address.js';
import { decideMembership } from '../../../../service/src/mesh/membership/membership.js';
import type { ExternalPeer, MembershipSettings, MeshNode } from '../../../../service/src/mesh/types.js';
import { cidrContains, formatCidr, parseCidr, parseIp } from '../../../../service/src/net/ip.js';
import { generatePrivateKey, publicKeyFromPrivate } from '../../../../service/src/wireguard/keys.js';
import { KEYS, meshNode } from '../../../support/fakes/fixtures.js';
import { rng } from '../../../support/fakes/random.js';

const SETTINGS: MembershipSettings = {
  overlayCidr: '100.64.0.0/10',
  overlayCidr6: 'fd11:2233:4455::/48',
  listenPort: 51820,
};

const NODES: MeshNode[] = [
  meshNode('a', { ip: '192.0.2.11', created: 1, pods: ['10.244.1.0/24', 'fd10:244:1::/64'], key: KEYS[0] }),
  meshNode('b', { ip: '192.0.2.12', created: 2, pods: ['10.244.2.0/24'], key: KEYS[1] }),
];

/** A Peer as Kilo's resource has it. */
function peer(name: string, allowedIPs: string[], o: Partial<ExternalPeer> = {}): ExternalPeer {
  return {
    name,
    createdAt: Date.UTC(2026, 0, 1),
    allowedIPs,
    publicKey: KEYS[5],
    presharedKey: undefined,
    persistentKeepalive: 25,
    endpoint: undefined,
    ...o,
  };
}

/** The choice for the laptop's key (KEYS[3]) in a cluster. */
function choose(o: Partial<PeerAddressInput> = {}): string {
  const c = choosePeerAddress({
    nodes: NODES,
    externalPeers: [],
    settings: SETTINGS,
    name: 'laptop',
    publicKey: KEYS[3],
    family: 4,
    ...o,
  });
  assert.ok('address' in c, 'problem' in c ? c.problem : '');
  return c.address;
}

const inside = (address: string, range: string): boolean =>
  cidrContains(parseCidr(range)!, parseIp(address.split('/')[0]!)!);

describe('unit: the address of a self-joining Peer (connect)', () => {
  it('is stable: the same key gets the same address, whatever else changes in the cluster; another key another one', () => {
    const first = choose();
    assert.ok(inside(first, PEER_POOL4), first);
    assert.match(first, /\/32$/);
    assert.equal(choose(), first);
    const more = [...NODES, meshNode('c', { ip: '192.0.2.13', created: 3, pods: ['10.244.3.0/24'], key: KEYS[2] })];
    assert.equal(choose({ nodes: more, externalPeers: [peer('ci', ['10.5.0.9/32'])] }), first);
    assert.notEqual(choose({ publicKey: KEYS[4] }), first);
    const six = choose({ family: 6 });
    assert.ok(inside(six, PEER_POOL6), six);
    assert.match(six, /\/128$/);
    assert.equal(choose({ family: 6 }), six);
  });

  it('never takes an address a Node or another Peer claims, in any form: it moves on to the next free one', () => {
    const first = choose();
    const ip = first.split('/')[0]!;
    const next = (a: string): string => {
      const v = parseIp(a.split('/')[0]!)!;
      return `${formatCidr({ family: 4, network: v.value + 1n, prefix: 32 }).split('/')[0]}`;
    };
    const holders: Array<[string, Partial<PeerAddressInput>]> = [
      ['a Peer with the same address', { externalPeers: [peer('ci', [first])] }],
      ['a Peer with a range around it', { externalPeers: [peer('site', [`${ip.replace(/\.\d+$/, '.0')}/24`])] }],
      ["an invalid Peer (still somebody's)", { externalPeers: [peer('bad', [first], { publicKey: 'nope' })] }],
      ["a Node's InternalIP", { nodes: [...NODES, meshNode('c', { ip, created: 3, key: KEYS[2] })] }],
      ["a Node's ExternalIP", { nodes: [...NODES, meshNode('c', { ip: '192.0.2.13', external: ip, key: KEYS[2] })] }],
      [
        "a Node's PodCIDR",
        { nodes: [...NODES, meshNode('c', { ip: '192.0.2.13', pods: [`${ip.replace(/\.\d+$/, '.0')}/24`] })] },
      ],
      ['a range the host routes into the tunnel', { avoid: [`${ip}/32`] }],
    ];
    for (const [what, o] of holders) {
      const got = choose(o);
      assert.notEqual(got, first, what);
      assert.ok(inside(got, PEER_POOL4), `${what}: ${got}`);
      if (!what.includes('range') && !what.includes('PodCIDR')) assert.equal(got.split('/')[0], next(first), what);
    }
    // Its own earlier claim (the same name) is not in its way.
    assert.equal(choose({ externalPeers: [peer('laptop', [first], { publicKey: KEYS[3] })] }), first);
  });

  it('takes the pool only where [peers] allowed_ranges allows it, avoids named pod networks, and falls back to the allowed ranges', () => {
    assert.deepEqual(peerAddressPools(4, SETTINGS).map(formatCidr), [
      PEER_POOL4,
      '10.0.0.0/8',
      '172.16.0.0/12',
      '192.168.0.0/16',
    ]);
    const site = { ...SETTINGS, externalRanges: ['192.168.77.0/24', 'fd05::/64'] };
    assert.ok(inside(choose({ settings: site }), '192.168.77.0/24'));
    assert.ok(inside(choose({ settings: site, family: 6 }), 'fd05::/64'));
    const pods = { ...SETTINGS, podCidrs: ['10.255.0.0/17', '10.244.0.0/16'] };
    for (const key of KEYS) assert.ok(inside(choose({ settings: pods, publicKey: key }), '10.255.128.0/17'), key);
    // The whole pool routed into the tunnel (a service range over it): an address from the allowed ranges.
    const got = choose({ avoid: ['10.255.0.0/16'] });
    assert.ok(inside(got, '10.0.0.0/8') && !inside(got, '10.255.0.0/16'), got);
  });

  it('says why there is none: no allowed range of the family, or every address claimed', () => {
    const v4only = choosePeerAddress({
      nodes: NODES,
      externalPeers: [],
      settings: { ...SETTINGS, externalRanges: ['10.5.0.0/16'] },
      name: 'laptop',
      publicKey: KEYS[3],
      family: 6,
    });
    assert.deepEqual(v4only, { problem: '[peers] allowed_ranges has no IPv6 range to take an address from' });
    const full = choosePeerAddress({
      nodes: NODES,
      externalPeers: [peer('ci', ['10.5.0.0/30'])],
      settings: { ...SETTINGS, externalRanges: ['10.5.0.0/30'] },
      name: 'laptop',
      publicKey: KEYS[3],
      family: 4,
    });
    assert.deepEqual(full, {
      problem: 'no free IPv4 address in 10.5.0.0/30: every address is claimed or refused; give one with --address',
    });
  });

  it("the mesh's own verdict on a claim: admitted, or the reason every node would give", () => {
    const claim = (p: ExternalPeer, peers: ExternalPeer[] = []): string | undefined =>
      peerClaimProblem({ nodes: NODES, externalPeers: peers, settings: SETTINGS, peer: p });
    const me = (allowedIPs: string[], o: Partial<ExternalPeer> = {}): ExternalPeer =>
      peer('laptop', allowedIPs, { publicKey: KEYS[3], createdAt: Infinity, ...o });
    assert.equal(claim(me([choose()])), undefined);
    assert.match(
      claim(me(['10.244.1.7/32']))!,
      /allowedIPs 10\.244\.1\.7\/32 overlaps 10\.244\.1\.0\/24 of older Node a/,
    );
    assert.match(claim(me(['192.0.2.11/32']))!, /contains 192\.0\.2\.11, the InternalIP of Node a, an older claim/);
    assert.match(claim(me(['198.51.100.7/32']))!, /outside the ranges external routes may take/);
    assert.match(
      claim(me(['10.5.0.2/32']), [peer('old', ['10.6.0.1/32'], { publicKey: KEYS[3] })])!,
      /duplicate public key/,
    );
    // An older claim of the same name (the Peer as it is in the cluster) is replaced, not in the way.
    assert.equal(claim(me(['10.5.0.2/32']), [peer('laptop', ['10.5.0.3/32'], { publicKey: KEYS[3] })]), undefined);
  });

  it('over 100 seeded random clusters: every address chosen is admitted by the mesh and takes nothing from anyone', function () {
    this.timeout(30_000);
    for (let seed = 1; seed <= 100; seed += 1) {
      const r = rng(seed);
      const nodes: MeshNode[] = [];
      const peers: ExternalPeer[] = [];
      const n = 1 + Math.floor(r() * 6);
      for (let k = 0; k < n; k += 1) {
        // PodCIDRs, addresses and Peers crowd the pool on purpose.
        const third = Math.floor(r() * 4);
        nodes.push(
          meshNode(`n${k}`, {
            ip: r() < 0.5 ? `10.255.${third}.${1 + Math.floor(r() * 250)}` : `192.0.2.${10 + k}`,
            created: k,
            pods: [`10.255.${8 + k}.0/24`, `fd77:676f:0:${k}::/64`],
            key: publicKeyFromPrivate(generatePrivateKey()),
          }),
        );
      }
      for (let k = 0; k < Math.floor(r() * 6); k += 1)
        peers.push(
          peer(`p${k}`, [`10.255.${Math.floor(r() * 16)}.${1 + Math.floor(r() * 250)}/32`], {
            publicKey: publicKeyFromPrivate(generatePrivateKey()),
            createdAt: Date.UTC(2026, 0, 1) + k,
          }),
        );
      const publicKey = publicKeyFromPrivate(generatePrivateKey());
      const settings = { ...SETTINGS, ...(r() < 0.3 ? { podCidrs: ['10.255.8.0/21'] } : {}) };
      const base = { nodes, externalPeers: peers, settings, name: 'laptop', publicKey };
      const v4 = choosePeerAddress({ ...base, family: 4 });
      const v6 = choosePeerAddress({ ...base, family: 6 });
      assert.ok('address' in v4 && 'address' in v6, `seed ${seed}`);
      const me = peer('laptop', [v4.address, v6.address], { publicKey, createdAt: Date.UTC(2027, 0, 1) });
      assert.equal(peerClaimProblem({ nodes, externalPeers: peers, settings, peer: me }), undefined, `seed ${seed}`);
      const before = decideMembership(nodes, peers, settings);
      const after = decideMembership(nodes, [...peers, me], settings);
      assert.deepEqual(after.skipped, before.skipped, `seed ${seed}: nobody lost anything`);
      assert.deepEqual(after.members, before.members, `seed ${seed}`);
      assert.deepEqual(
        after.externalPeers.map((p) => p.name),
        [...before.externalPeers.map((p) => p.name), 'laptop'].sort(),
        `seed ${seed}`,
      );
    }
  });
});
