/**
 * `wg-overlay connect` before it touches the network, against fakes: its options and their errors,
 * how it claims its Peer (create, take over with the same addresses, a lost race, a name taken by
 * another key, a key another Peer uses, a claim the mesh refuses) and the messages an admin gets
 * for a missing RBAC verb, a missing Peer CRD and no route to any node.
 */
import assert from 'node:assert/strict';
import { claimPeer, ConnectError, familiesNeeded, type ClaimInput } from '../../../service/src/connect/claim.js';
import {
  connectOptions,
  ConnectUsageError,
  defaultKubeconfig,
  defaultPeerName,
} from '../../../service/src/connect/options.js';
import { routeToNodes } from '../../../service/src/connect/prepare.js';
import { RecordingRunner } from '../../../service/src/exec/runner.js';
import { ApiHttpError } from '../../../service/src/kube/api-http.js';
import {
  peerRequestMessage,
  PeerRequestError,
  type PeerClient,
  type PeerObject,
} from '../../../service/src/kube/peer-resource.js';
import { memoryLogger } from '../../../service/src/log/logger.js';
import { decideMembership } from '../../../service/src/mesh/membership/membership.js';
import type { MembershipSettings } from '../../../service/src/mesh/types.js';
import { KEYS, meshNode } from '../../support/fakes/fixtures.js';

/** Text as a literal part of a regular expression. */
const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** A pattern of these texts, literally and one after the other; a RegExp among them stands for what varies. */
const texts = (...parts: Array<string | RegExp>): RegExp =>
  new RegExp(parts.map((x) => (typeof x === 'string' ? esc(x) : x.source)).join(''));

const SETTINGS: MembershipSettings = { overlayCidr: '100.64.0.0/10', listenPort: 51820 };
const NODES = [
  meshNode('a', { ip: '192.0.2.11', created: 1, pods: ['10.244.1.0/24'], key: KEYS[0] }),
  meshNode('b', { ip: '192.0.2.12', created: 2, pods: ['10.244.2.0/24'], key: KEYS[1] }),
];

/** A Peer store in memory that records what was asked of it; `fail` makes a verb fail with an HTTP status. */
class FakePeers implements PeerClient {
  readonly calls: string[] = [];
  readonly objects = new Map<string, PeerObject>();
  fail: Partial<Record<'list' | 'create' | 'update' | 'delete', number>> = {};
  private uid = 0;

  private check(verb: 'list' | 'create' | 'update' | 'delete', name: string): void {
    this.calls.push(`${verb} ${name}`);
    const status = this.fail[verb];
    if (status) {
      const err = new ApiHttpError(status, JSON.stringify({ message: `injected ${status}` }), verb);
      throw new PeerRequestError(verb, status, peerRequestMessage(verb, name, err), { cause: err });
    }
  }

  async find(name: string): Promise<PeerObject | undefined> {
    this.check('list', name);
    return this.objects.get(name);
  }

  async create(obj: PeerObject): Promise<PeerObject> {
    this.check('create', obj.metadata.name);
    const made = {
      ...obj,
      metadata: { ...obj.metadata, uid: `uid-${++this.uid}`, creationTimestamp: '2027-01-01T00:00:00Z' },
    };
    this.objects.set(obj.metadata.name, made);
    return made;
  }

  async replace(obj: PeerObject): Promise<PeerObject> {
    this.check('update', obj.metadata.name);
    const old = this.objects.get(obj.metadata.name)!;
    const next = { ...obj, metadata: { ...old.metadata, ...obj.metadata } };
    this.objects.set(obj.metadata.name, next);
    return next;
  }

  async remove(name: string): Promise<void> {
    this.check('delete', name);
    this.objects.delete(name);
  }
}

/** The claim of the laptop (KEYS[3]) against `client`. */
function claim(client: PeerClient, o: Partial<ClaimInput> = {}): ReturnType<typeof claimPeer> {
  return claimPeer({
    client,
    name: 'laptop',
    publicKey: KEYS[3],
    keyFile: '/var/lib/wg-overlay-connect/wgo0.key',
    keepalive: 25,
    nodes: NODES,
    externalPeers: [],
    settings: SETTINGS,
    addresses: [],
    advertise: [],
    avoid: [],
    log: memoryLogger(),
    ...o,
  });
}

/** The message of the ConnectError (or PeerRequestError) a promise rejects with. */
async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof ConnectError || e instanceof PeerRequestError, String(e));
    return e.message;
  }
  assert.fail('expected a refusal');
}

describe('unit: connect — options', () => {
  it('defaults: the kubeconfig kubectl would use, the host name as the Peer name, wgo0, keepalive 25, a key per interface', () => {
    assert.equal(defaultKubeconfig({ KUBECONFIG: '/a/one:/b/two' }, '/root'), '/a/one');
    assert.equal(defaultKubeconfig({}, '/home/ada'), '/home/ada/.kube/config');
    assert.equal(defaultPeerName('Ada_Laptop.Example.COM'), 'ada-laptop.example.com');
    const o = connectOptions({ name: 'ci-42', interface: 'wgo1', address: ['10.255.0.7', 'fd77:676f::7/128'] }, {});
    assert.deepEqual(
      [o.name, o.iface, o.addresses, o.keepalive, o.privateKey, o.runtimeDir, o.keep],
      [
        'ci-42',
        'wgo1',
        ['10.255.0.7/32', 'fd77:676f::7/128'],
        25,
        '/var/lib/wg-overlay-connect/wgo1.key',
        '/run/wg-overlay-connect/wgo1',
        false,
      ],
    );
    const more = connectOptions(
      { name: 'x', 'allowed-ips': ['10.96.0.0/12,fd00:96::/108'], 'persistent-keepalive': '0' },
      {},
    );
    assert.deepEqual([more.allowedIPs, more.keepalive], [['10.96.0.0/12', 'fd00:96::/108'], 0]);
  });

  const bad: Array<[string, Parameters<typeof connectOptions>[0], RegExp]> = [
    ['a name the API server refuses', { name: 'Ada Laptop' }, /--name Ada Laptop: is not a valid object name/],
    ['an interface name Linux refuses', { name: 'x', interface: 'wg/0' }, /--interface wg\/0: not an interface name/],
    [
      'a range as the address',
      { name: 'x', address: ['10.255.0.0/24'] },
      /give this host's one address \(e\.g\. 10\.255\.0\.0\); ranges behind this host go in --advertise-routes/,
    ],
    ['two IPv4 addresses', { name: 'x', address: ['10.255.0.7,10.255.0.8'] }, /at most one IPv4 address/],
    ['not an address', { name: 'x', address: ['banana'] }, /--address: "banana" is not an address/],
    [
      'a bad CIDR',
      { name: 'x', 'advertise-routes': ['192.168.1.0'] },
      /--advertise-routes: "192\.168\.1\.0" is not a CIDR/,
    ],
    ['a keepalive out of range', { name: 'x', 'persistent-keepalive': '70000' }, /not a number of seconds in 0-65535/],
  ];
  for (const [what, args, message] of bad) {
    it(`refuses ${what}`, () => {
      assert.throws(
        () => connectOptions(args, {}),
        (e: unknown) => e instanceof ConnectUsageError && message.test(e.message),
      );
    });
  }
});

describe('unit: connect — claiming its Peer', () => {
  it('creates the Peer with its key, a pool address per family the cluster needs, the advertised ranges and the keepalive', async () => {
    const peers = new FakePeers();
    const c = await claim(peers, {
      settings: { ...SETTINGS, overlayCidr6: 'fd11:2233:4455::/48' },
      advertise: ['192.168.50.0/24'],
    });
    assert.equal(c.created, true);
    assert.match(c.addresses[0]!, /^10\.255\.\d+\.\d+\/32$/);
    assert.match(c.addresses[1]!, /^fd77:676f::[0-9a-f:]+\/128$/);
    assert.deepEqual(c.object.spec, {
      allowedIPs: [...c.addresses, '192.168.50.0/24'],
      publicKey: KEYS[3],
      persistentKeepalive: 25,
    });
    assert.equal(c.object.metadata.labels?.['app.kubernetes.io/managed-by'], 'wg-overlay-connect');
    assert.deepEqual(familiesNeeded(NODES, SETTINGS), [4]);
    assert.deepEqual(familiesNeeded([meshNode('c', { pods: ['fd10::/64'] })], SETTINGS), [4, 6]);
  });

  it('takes over its own Peer (same key): the same addresses, updated only when the spec differs; a lost create race reads it again', async () => {
    const peers = new FakePeers();
    const first = await claim(peers);
    peers.calls.length = 0;
    const again = await claim(peers);
    assert.deepEqual(
      [again.created, again.addresses, again.object.metadata.uid],
      [false, first.addresses, first.object.metadata.uid],
    );
    assert.deepEqual(peers.calls, ['list laptop'], 'nothing written when nothing changed');
    const keep10 = await claim(peers, { keepalive: 10 });
    assert.deepEqual(keep10.addresses, first.addresses);
    assert.equal(keep10.object.spec.persistentKeepalive, 10);
    assert.deepEqual(peers.calls.slice(-2), ['list laptop', 'update laptop']);
    // Someone else created it between the read and the create: 409, read again, and (same key) take it over.
    const racing = new FakePeers();
    let created = false;
    racing.create = async (obj) => {
      if (!created) {
        created = true;
        racing.objects.set('laptop', { ...obj, metadata: { ...obj.metadata, uid: 'theirs' } });
        const err = new ApiHttpError(409, '{"message":"already exists"}', 'create');
        throw new PeerRequestError('create', 409, peerRequestMessage('create', 'laptop', err));
      }
      return obj;
    };
    assert.equal((await claim(racing)).object.metadata.uid, 'theirs');
  });

  it('refuses a name taken by another key, a key another Peer uses, and a claim every node would refuse', async () => {
    const peers = new FakePeers();
    await claim(peers, { publicKey: KEYS[4] });
    assert.match(
      await refusal(claim(peers)),
      texts(
        `the name laptop is taken: Peer laptop exists with another public key (${KEYS[4]}, created 2027-01-01T00:00:00Z); `,
        "choose another name with --name, or, if it is this host's and its key file /var/lib/wg-overlay-connect/wgo0.key ",
        'was lost, delete it first: kubectl delete peer laptop',
      ),
    );
    const other = {
      name: 'old-laptop',
      createdAt: 0,
      allowedIPs: ['10.5.0.2/32'],
      publicKey: KEYS[3],
      presharedKey: undefined,
      persistentKeepalive: 0,
      endpoint: undefined,
    };
    assert.match(
      await refusal(claim(new FakePeers(), { externalPeers: [other] })),
      /this host's public key .* is already the key of Peer old-laptop: run with --name old-laptop to take it over, or delete it/,
    );
    assert.match(
      await refusal(claim(new FakePeers(), { addresses: ['10.244.1.9/32'] })),
      /^every node would leave Peer laptop out: allowedIPs 10\.244\.1\.9\/32 overlaps 10\.244\.1\.0\/24 of older Node a$/,
    );
    assert.match(
      await refusal(claim(new FakePeers(), { advertise: ['198.51.100.0/24'] })),
      texts(
        'every node would leave Peer laptop out: allowedIPs 198.51.100.0/24 is outside the ranges external routes may take ',
        '([peers] allowed_ranges = 10.0.0.0/8',
      ),
    );
  });

  it('a 403 names the missing RBAC verb and connect-rbac.yaml; a 404 the Peer CRD to install', async () => {
    const peers = new FakePeers();
    peers.fail.create = 403;
    assert.match(
      await refusal(claim(peers)),
      texts(
        'creating Peer laptop: forbidden (HTTP 403: injected 403): the kubeconfig\'s user lacks the RBAC verb "create" on ',
        'peers.kilo.squat.ai; grant what connect needs with /usr/share/wg-overlay/kubernetes/connect-rbac.yaml: ',
        'kubectl apply -f /usr/share/wg-overlay/kubernetes/connect-rbac.yaml && kubectl create clusterrolebinding ',
        'wg-overlay-connect-USER --clusterrole=wg-overlay-connect --user=USER',
      ),
    );
    peers.fail = { list: 404 };
    assert.match(
      await refusal(claim(peers)),
      texts(
        'listing peers.kilo.squat.ai: the Peer resource (kilo.squat.ai/v1alpha1) is not served by the API server: the Peer ',
        'CRD is not installed; install it with kubectl apply -f /usr/share/wg-overlay/kubernetes/crd-peer.yaml',
      ),
    );
    const err = new ApiHttpError(403, '{"message":"no"}', 'x');
    assert.match(
      peerRequestMessage('update', 'laptop', err),
      /^updating Peer laptop: forbidden .* lacks the RBAC verb "update"/,
    );
    assert.match(
      peerRequestMessage('delete', 'laptop', err),
      /^deleting Peer laptop: forbidden .* lacks the RBAC verb "delete"/,
    );
    assert.equal(
      peerRequestMessage('create', 'laptop', new ApiHttpError(500, '{"message":"etcd"}', 'x')),
      'creating Peer laptop: HTTP 500: etcd',
    );
  });
});

describe('unit: connect — a route to some node', () => {
  const members = decideMembership(
    [...NODES, meshNode('c', { ip: ['203.0.113.13', '2001:db8::13'], created: 3, key: KEYS[2] })],
    [],
    SETTINGS,
  ).members;

  it('the first node address the host has a route to, with its source address (IPv4 first)', async () => {
    const runner = new RecordingRunner((_c, args) =>
      args.includes('203.0.113.13')
        ? { stdout: '[{"dst":"203.0.113.13","prefsrc":"203.0.113.99"}]' }
        : { exitCode: 2, stderr: 'RTNETLINK answers: Network is unreachable' },
    );
    assert.deepEqual(await routeToNodes(runner, members), { ip: '203.0.113.13', src: '203.0.113.99' });
    assert.deepEqual(runner.calls, [
      'ip -j route get 192.0.2.11',
      'ip -j route get 192.0.2.12',
      'ip -j route get 203.0.113.13',
    ]);
  });

  it('none: "no route to any node", with every address tried and why', async () => {
    const runner = new RecordingRunner(() => ({ exitCode: 2, stderr: 'RTNETLINK answers: Network is unreachable\n' }));
    assert.match(
      await refusal(routeToNodes(runner, members)),
      texts(
        "no route to any node: this host has no route to any of the 3 nodes' endpoints: 192.0.2.11 (Network is unreachable), ",
        '192.0.2.12 (Network is unreachable), 203.0.113.13 (Network is unreachable), 2001:db8::13 (Network is unreachable); ',
        'connect from a host that reaches the nodes',
      ),
    );
  });
});
