/**
 * Rendered wg-quick files against the real tools inside test nodes: `wg-quick strip` reads them
 * and agrees with stripWgQuick, `wg setconf`/`wg showconf` on a wireguard-go interface round-trip
 * the peers, and two (then pod-carrying) nodes brought up with `wg-quick up` ping across the
 * tunnel. Also the guarded file write on a node's private /etc.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { generatePrivateKey, publicKeyFromPrivate } from '../../../service/src/wireguard/keys.js';
import {
  MANAGED_HEADER,
  parseWgQuick,
  renderWgQuick,
  stripWgQuick,
  writeWgQuickFile,
  type WgQuickConfig,
  type WgQuickPeer,
} from '../../../service/src/wireguard/wgquick.js';
import { requireTools } from '../../support/process.js';
import { TestNode } from '../../support/namespaces/netns.js';
import { TestNetwork } from '../../support/namespaces/underlay.js';
import { TestPod } from '../../support/namespaces/pods.js';

const TOOLS = ['wg', 'wg-quick', 'wireguard-go', 'ip', 'nsenter', 'unshare', 'ping'];

/** A key pair. */
function keyPair(): { priv: string; pub: string } {
  const priv = generatePrivateKey();
  return { priv, pub: publicKeyFromPrivate(priv) };
}

/** Peers as `wg showconf` reports them: no names, sorted by public key. */
function comparablePeers(peers: readonly WgQuickPeer[]): WgQuickPeer[] {
  return peers
    .map(({ name: _name, ...rest }) => rest)
    .sort((a, b) => (a.publicKey < b.publicKey ? -1 : a.publicKey > b.publicKey ? 1 : 0));
}

describe('integration: wg-quick files with the real wireguard tools', function () {
  this.timeout(60_000);

  before(async () => {
    await requireTools(TOOLS);
  });

  describe('one node: wg-quick strip, wireguard-go, wg setconf/showconf', () => {
    let node: TestNode;
    const me = keyPair();
    const peers = [keyPair(), keyPair(), keyPair()];
    const cfg: WgQuickConfig = {
      iface: {
        privateKey: me.priv,
        address: ['100.64.0.1/10'],
        listenPort: 51820,
        mtu: 1420,
        table: 'off',
        extra: [['FwMark', '0xca6c']],
      },
      peers: [
        {
          name: 'node-b',
          publicKey: peers[0]!.pub,
          endpoint: '192.0.2.12:51820',
          allowedIPs: ['100.64.0.2/32', '10.244.2.0/24'],
          persistentKeepalive: 25,
        },
        {
          name: 'node-c',
          publicKey: peers[1]!.pub,
          presharedKey: generatePrivateKey(),
          endpoint: '[2001:db8::13]:51821',
          allowedIPs: ['100.64.0.3/32', 'fd00:244:3::/64'],
        },
        { name: 'node-d', publicKey: peers[2]!.pub, allowedIPs: ['100.64.0.4/32'] },
      ],
    };

    before(async () => {
      node = await TestNode.create({ label: 'wgnode' });
    });
    after(async () => {
      await node?.destroy();
    });

    it("is accepted by `wg-quick strip` from the node's private /etc, which prints exactly stripWgQuick", async () => {
      const result = await writeWgQuickFile(node.path('/etc/wireguard/wgt0.conf'), cfg);
      assert.deepEqual(result, { changed: true });
      assert.equal(existsSync('/etc/wireguard/wgt0.conf'), false, 'the host /etc is untouched');
      const strip = await node.exec('wg-quick', ['strip', 'wgt0']);
      assert.equal(strip.stderr, '', 'no warnings (e.g. about a world-accessible file)');
      // wg-quick echoes its buffer, which already ends in a newline: one extra newline.
      assert.equal(strip.stdout, `${stripWgQuick(cfg)}\n`);
      const parsed = parseWgQuick(strip.stdout, 'wg-quick strip');
      assert.deepEqual(parsed.peers, cfg.peers);
      assert.deepEqual(parsed.iface, {
        privateKey: me.priv,
        address: [],
        listenPort: 51820,
        extra: [['FwMark', '0xca6c']],
      });
    });

    it('configures a wireguard-go interface with `wg setconf`, and `wg showconf` returns the same peers', async () => {
      const t0 = Date.now();
      const started = await node.exec('wireguard-go', ['wgt0']);
      const startMs = Date.now() - t0;
      // Debian's wireguard-go prints a box on stderr claiming kernel support (absent here); it
      // daemonizes, so the command returns once the interface exists.
      const banner = started.stderr
        .split('\n')
        .find((l) => /wireguard-go/.test(l))
        ?.replace(/[│\s]+/g, ' ')
        .trim();
      console.log(
        `      (wireguard-go started in ${startMs} ms; stderr banner: ${JSON.stringify(banner ?? started.stderr)})`,
      );
      await node.exec('ip', ['link', 'show', 'wgt0']);
      await node.writeFile('/run/wgt0.setconf', stripWgQuick(cfg), 0o600);
      await node.exec('wg', ['setconf', 'wgt0', '/run/wgt0.setconf']);
      const shown = await node.exec('wg', ['showconf', 'wgt0']);
      const parsed = parseWgQuick(shown.stdout, 'wg showconf wgt0');
      assert.equal(parsed.iface.privateKey, me.priv);
      assert.equal(parsed.iface.listenPort, 51820);
      assert.deepEqual(parsed.iface.extra, [['FwMark', '0xca6c']]);
      assert.deepEqual(comparablePeers(parsed.peers), comparablePeers(cfg.peers));
      const pub = await node.exec('wg', ['show', 'wgt0', 'public-key']);
      assert.equal(pub.stdout.trim(), me.pub);
      // The control socket lives in the node's private /run, not the host's.
      assert.ok(existsSync(node.path('/run/wireguard/wgt0.sock')));
      assert.equal(existsSync('/run/wireguard/wgt0.sock'), false);
    });

    it('writeWgQuickFile: skips identical content, refuses a foreign file, keeps 0600', async () => {
      const path = node.path('/etc/wireguard/wgt0.conf');
      assert.deepEqual(await writeWgQuickFile(path, cfg), { changed: false });
      assert.equal((await stat(path)).mode & 0o777, 0o600);
      const foreignPath = node.path('/etc/wireguard/wgt1.conf');
      const foreign = `# my own tunnel\n[Interface]\nPrivateKey = ${me.priv}\n`;
      await node.writeFile('/etc/wireguard/wgt1.conf', foreign, 0o600);
      await assert.rejects(writeWgQuickFile(foreignPath, cfg), (err: Error) => {
        assert.ok(err.message.includes(foreignPath), err.message);
        assert.match(err.message, /not written by wg-overlay/);
        assert.match(err.message, /move it away/);
        assert.ok(!err.message.includes(me.priv));
        return true;
      });
      assert.equal(await readFile(foreignPath, 'utf8'), foreign);
      const changed = { ...cfg, peers: cfg.peers.slice(1) };
      assert.deepEqual(await writeWgQuickFile(path, changed), { changed: true });
      assert.ok((await node.readFile('/etc/wireguard/wgt0.conf')).startsWith(`${MANAGED_HEADER}\n`));
      assert.equal((await stat(path)).mode & 0o777, 0o600);
    });
  });

  describe('two nodes: wg-quick up and ping across the tunnel', () => {
    let net: TestNetwork;
    const keys = [keyPair(), keyPair()];
    const podCidr = (i: number): string => `10.244.${i + 1}.0/24`;
    /** The config of node i (0 or 1) for a mesh of the two. */
    const configOf = (i: number): WgQuickConfig => {
      const j = 1 - i;
      return {
        iface: {
          privateKey: keys[i]!.priv,
          address: [`100.64.0.${i + 1}/10`],
          listenPort: 51820,
          mtu: 1420,
          table: 'off',
          extra: [],
        },
        peers: [
          {
            name: `node-${'ab'[j]}`,
            publicKey: keys[j]!.pub,
            endpoint: `192.0.2.${11 + j}:51820`,
            allowedIPs: [`100.64.0.${j + 1}/32`, podCidr(j)],
            persistentKeepalive: 25,
          },
        ],
      };
    };

    before(async () => {
      const t0 = Date.now();
      net = await TestNetwork.create({ nodes: 2 });
      console.log(`      (2 nodes + underlay set up in ${Date.now() - t0} ms)`);
    });
    after(async () => {
      await net?.destroy();
    });

    it('brings both up with `wg-quick up` and pings 100.64.0.1 -> 100.64.0.2', async () => {
      for (const [i, node] of net.nodes.entries()) {
        await writeWgQuickFile(node.path('/etc/wireguard/wgt0.conf'), configOf(i));
        const t0 = Date.now();
        const up = await node.exec('wg-quick', ['up', 'wgt0']);
        console.log(`      (${node.label}: wg-quick up took ${Date.now() - t0} ms)`);
        assert.match(up.stderr, /\[#\] wireguard-go wgt0/, 'wg-quick fell back to wireguard-go');
        assert.match(up.stderr, /\[#\] ip -4 address add 100\.64\.0\.\d\/10 dev wgt0/);
        const mtu = await node.exec('cat', ['/sys/class/net/wgt0/mtu']);
        assert.equal(mtu.stdout.trim(), '1420');
      }
      const [a, b] = net.nodes as [TestNode, TestNode];
      const ping = await a.exec('ping', ['-c', '3', '-i', '0.2', '-W', '2', '-w', '10', '100.64.0.2']);
      assert.match(ping.stdout, /3 received/);
      const hs = await a.exec('wg', ['show', 'wgt0', 'latest-handshakes']);
      assert.match(hs.stdout, new RegExp(`^${keys[1]!.pub.replace(/[+/]/g, '\\$&')}\\t[1-9]\\d*$`, 'm'));
      await b.exec('ping', ['-c', '1', '-W', '2', '100.64.0.1']);
    });

    it('carries pod traffic once the daemon-style routes for pod CIDRs point into wgt0', async () => {
      const pods: TestPod[] = [];
      for (const [i, node] of net.nodes.entries()) {
        pods.push(
          await TestPod.create(node, { address: `10.244.${i + 1}.2/24`, gateway: `10.244.${i + 1}.1`, mtu: 1420 }),
        );
        // Table = off: the routes to the other node's pods are ours to add.
        await node.exec('ip', ['route', 'add', podCidr(1 - i), 'dev', 'wgt0']);
      }
      const ping = await pods[0]!.exec('ping', ['-c', '2', '-i', '0.2', '-W', '2', '-w', '10', '10.244.2.2']);
      assert.match(ping.stdout, /2 received/);
      // The underlay carried it encrypted: the far node's counters grew.
      const transfer = await net.nodes[1]!.exec('wg', ['show', 'wgt0', 'transfer']);
      assert.match(transfer.stdout, /\t[1-9]\d*\t[1-9]\d*$/m);
    });

    it('takes the interfaces down again with `wg-quick down`', async () => {
      for (const node of net.nodes) {
        await node.exec('wg-quick', ['down', 'wgt0']);
        const link = await node.exec('ip', ['link', 'show', 'wgt0'], { allowFailure: true });
        assert.equal(link.failed, true, 'wgt0 is gone');
      }
      // The rendered file is still ours and unchanged.
      const text = await net.nodes[0]!.readFile('/etc/wireguard/wgt0.conf');
      assert.equal(text, renderWgQuick(configOf(0)));
    });
  });
});
