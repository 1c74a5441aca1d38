/**
 * What lets the service run as the user wg-overlay, checked without a booted system (the system
 * tier does that): the polkit rule (evaluated in a JavaScript context that stands in for polkitd,
 * with the interface its helper would print),
 * the wg-quick@ drop-in, the check wg-quick@<if> applies to the daemon's wg-quick file before
 * root's wg-quick reads it (every file the renderer can write passes; commands and anything else
 * are refused), and the helpers' syntax.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { runInNewContext } from 'node:vm';
import { KEYS } from '../../support/fakes/fixtures.js';
import { renderWgQuick, type WgQuickConfig } from '../../../service/src/wireguard/wgquick.js';
import { toWgQuickConfig } from '../../../service/src/wireguard/conf.js';

const HOOK = 'packaging/libexec/wg-quick-hook';

// ---- polkit --------------------------------------------------------------------------------

type Verdict = 'yes' | 'no' | 'not handled';

/** What the rule's polkit.spawn of the helper answers: its output, or the error it throws (no interface recorded). */
type Recorded = string | Error;

/**
 * Loads the rule file the way polkitd does and returns a function asking it one question, with
 * `recorded` standing in for what `/usr/lib/wg-overlay/polkit-interface print` answers.
 */
function polkitRule(): (
  user: string,
  actionId: string,
  details: Record<string, string>,
  recorded?: Recorded,
) => Verdict {
  const rules: Array<(action: unknown, subject: unknown) => unknown> = [];
  const Result = { YES: 'yes', NO: 'no', NOT_HANDLED: null };
  let answer: Recorded = 'wg0\n';
  const spawn = (argv: string[]): string => {
    // argv is an array of the rule's own realm: compared by value.
    assert.equal(JSON.stringify(argv), JSON.stringify(['/usr/lib/wg-overlay/polkit-interface', 'print']));
    if (answer instanceof Error) throw answer;
    return answer;
  };
  runInNewContext(readFileSync('packaging/polkit/10-wg-overlay.rules', 'utf8'), {
    polkit: {
      Result,
      addRule: (f: (a: unknown, s: unknown) => unknown) => rules.push(f),
      log: () => undefined,
      spawn,
    },
  });
  assert.equal(rules.length, 1, 'one rule');
  return (user, actionId, details, recorded = 'wg0\n') => {
    answer = recorded;
    const action = { id: actionId, lookup: (k: string) => details[k] };
    const subject = { user, isInGroup: () => false, local: true, active: false };
    const r = rules[0]!(action, subject);
    return r === null || r === undefined ? 'not handled' : (r as Verdict);
  };
}

describe('unit: packaging: the polkit rule (10-wg-overlay.rules)', () => {
  const ask = polkitRule();
  const manage = 'org.freedesktop.systemd1.manage-units';

  it('lets user wg-overlay start and restart the wg-quick@ unit of the interface its service recorded, and only that one', () => {
    for (const verb of ['start', 'restart']) {
      assert.equal(ask('wg-overlay', manage, { unit: 'wg-quick@wg0.service', verb }), 'yes', `${verb} wg0`);
      assert.equal(ask('wg-overlay', manage, { unit: 'wg-quick@wg1.service', verb }), 'no', `${verb} wg1`);
      const mesh = 'wg-mesh_1\n';
      assert.equal(ask('wg-overlay', manage, { unit: 'wg-quick@wg-mesh_1.service', verb }, mesh), 'yes');
      assert.equal(ask('wg-overlay', manage, { unit: 'wg-quick@wg0.service', verb }, mesh), 'no');
    }
  });

  it('refuses every wg-quick@ unit while the service has recorded no interface (the helper fails)', () => {
    const none = new Error('Error spawning helper: exited with status 1');
    for (const verb of ['start', 'restart'])
      assert.equal(ask('wg-overlay', manage, { unit: 'wg-quick@wg0.service', verb }, none), 'no');
  });

  it('refuses user wg-overlay everything else: other verbs, other units, look-alikes, transient units, other actions', () => {
    const refused: Array<[string, Record<string, string>]> = [
      [manage, { unit: 'wg-quick@wg0.service', verb: 'stop' }],
      [manage, { unit: 'wg-quick@wg0.service', verb: 'reload' }],
      [manage, { unit: 'wg-quick@wg0.service', verb: 'kill' }],
      [manage, { unit: 'wg-overlay.service', verb: 'restart' }],
      [manage, { unit: 'ssh.service', verb: 'start' }],
      [manage, { unit: 'wg-quick@wg0.timer', verb: 'start' }],
      [manage, { unit: 'wg-quick@.service', verb: 'start' }],
      [manage, { unit: 'wg-quick@wg0.service.d/../x.service', verb: 'start' }],
      [manage, { unit: 'xwg-quick@wg0.service', verb: 'start' }],
      [manage, { unit: 'wg-quick@a-name-too-long-for-linux.service', verb: 'start' }],
      // StartTransientUnit passes no unit detail.
      [manage, { verb: 'start' }],
      [manage, {}],
      ['org.freedesktop.systemd1.manage-unit-files', {}],
      ['org.freedesktop.systemd1.reload-daemon', {}],
      ['org.freedesktop.login1.reboot', {}],
      ['org.freedesktop.policykit.exec', {}],
    ];
    for (const [id, details] of refused)
      assert.equal(ask('wg-overlay', id, details), 'no', `${id} ${JSON.stringify(details)}`);
  });

  it('a recorded name that is not an interface name matches no unit', () => {
    for (const recorded of ['', '\n', 'wg0.service', '*', 'wg0\nwg1'])
      assert.equal(
        ask('wg-overlay', manage, { unit: 'wg-quick@wg0.service', verb: 'start' }, recorded),
        'no',
        recorded,
      );
  });

  it('leaves every other user to the other rules', () => {
    assert.equal(ask('root', manage, { unit: 'wg-quick@wg0.service', verb: 'restart' }), 'not handled');
    assert.equal(ask('alice', manage, { unit: 'wg-quick@wg0.service', verb: 'restart' }), 'not handled');
    assert.equal(ask('wg-overlay2', manage, { unit: 'wg-quick@wg0.service', verb: 'restart' }), 'not handled');
  });
});

// ---- the wg-quick@ drop-in -----------------------------------------------------------------

describe('unit: packaging: the wg-quick@.service drop-in', () => {
  const text = readFileSync('systemd/wg-quick@.service.d/wg-overlay.conf', 'utf8');
  const lines = text.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#'));

  it("checks and installs the daemon's file before wg-quick starts, runs wireguard-go through the wrapper, cleans up after a stop", () => {
    assert.deepEqual(lines, [
      '[Service]',
      'ExecStartPre=/usr/lib/wg-overlay/wg-quick-hook start-pre %i',
      'Environment=WG_QUICK_USERSPACE_IMPLEMENTATION=/usr/lib/wg-overlay/wireguard-go',
      'ExecStopPost=/usr/lib/wg-overlay/wg-quick-hook stop-post %i',
    ]);
  });

  it('the helpers are executable and parse (sh, perl)', () => {
    for (const h of ['notify-socket', 'secrets-access', 'polkit-interface', 'wg-quick-hook', 'wireguard-go']) {
      const f = `packaging/libexec/${h}`;
      assert.equal(statSync(f).mode & 0o777, 0o755, `${f} mode`);
      const perl = readFileSync(f, 'utf8').startsWith('#!/usr/bin/perl\n');
      const r = perl ? spawnSync('perl', ['-c', f]) : spawnSync('sh', ['-n', f]);
      assert.equal(r.status, 0, `${f}: ${r.stderr.toString()}`);
      if (!perl) {
        assert.match(readFileSync(f, 'utf8'), /^#!\/bin\/sh\n/);
        const d = spawnSync('dash', ['-n', f]);
        if (d.error === undefined) assert.equal(d.status, 0, `${f} (dash): ${d.stderr.toString()}`);
      }
    }
  });
});

// ---- the check of the daemon's wg-quick file -----------------------------------------------

/** Runs `wg-quick-hook check` on `text`: exit status and problems. */
function check(text: string): { ok: boolean; problems: string[] } {
  const r = spawnSync('sh', [HOOK, 'check'], { input: text, encoding: 'utf8' });
  assert.ok(r.status === 0 || r.status === 1, `exit ${r.status}: ${r.stderr}`);
  return { ok: r.status === 0, problems: r.stdout.split('\n').filter(Boolean) };
}

const FULL: WgQuickConfig = {
  iface: {
    privateKey: KEYS[0],
    address: ['100.64.2.11/10', 'fd00:64::2:11/64'],
    listenPort: 51820,
    mtu: 1420,
    table: 'off',
    extra: [],
  },
  peers: [
    {
      name: 'node-b',
      publicKey: KEYS[1]!,
      endpoint: '192.0.2.12:51820',
      allowedIPs: ['100.64.2.12/32', '10.244.2.0/24'],
      persistentKeepalive: 25,
    },
    {
      name: 'laptop (external Peer)',
      publicKey: KEYS[2]!,
      presharedKey: KEYS[3],
      endpoint: '[2001:db8::7]:51999',
      allowedIPs: ['100.64.9.9/32', '2001:db8:9::/64'],
    },
    { name: 'node-d', publicKey: KEYS[4]!, endpoint: 'vpn.example.com:51820', allowedIPs: ['10.244.4.0/24'] },
    { publicKey: KEYS[5]!, allowedIPs: [] },
  ],
};

describe("unit: packaging: wg-quick-hook check (what wg-quick@<if> lets through to root's wg-quick)", () => {
  it("passes every file the daemon writes: the renderer's output with all its keys, and the daemon's own config for a desired state", () => {
    const full = renderWgQuick(FULL);
    for (const k of [
      'Address',
      'ListenPort',
      'PrivateKey',
      'MTU',
      'Table',
      'PublicKey',
      'PresharedKey',
      'AllowedIPs',
      'Endpoint',
      'PersistentKeepalive',
    ])
      assert.match(full, new RegExp(`^${k} = `, 'm'));
    assert.deepEqual(check(full), { ok: true, problems: [] });
    const desired = toWgQuickConfig(
      {
        iface: { name: 'wg0', address: '100.64.2.11/10', listenPort: 51821, mtu: 1380, publicKey: KEYS[1]! },
        peers: [
          {
            kind: 'node',
            name: 'b',
            publicKey: KEYS[2]!,
            endpoint: '192.0.2.12:51820',
            allowedIPs: ['10.244.2.0/24', '100.64.2.12/32'],
            persistentKeepalive: 0,
          },
        ],
        routes: [],
        publish: {},
        skipped: [],
        warnings: [],
      } as unknown as Parameters<typeof toWgQuickConfig>[0],
      KEYS[0]!,
    );
    assert.deepEqual(check(renderWgQuick(desired)), { ok: true, problems: [] });
  });

  it('refuses what wg-quick would run or what reaches beyond the interface, in any spelling, and never prints a value', () => {
    const good = renderWgQuick(FULL);
    const withLine = (line: string, where = '[Interface]\n'): string => good.replace(where, `${where}${line}\n`);
    const hostile: Array<[string, string]> = [
      ['PostUp', withLine('PostUp = touch /tmp/x')],
      ['PreUp', withLine('PreUp = touch /tmp/x')],
      ['PostDown', withLine('PostDown = touch /tmp/x')],
      ['PreDown', withLine('PreDown = touch /tmp/x')],
      ['postup in lower case', withLine('postup = touch /tmp/x')],
      ['POSTUP in upper case', withLine('POSTUP = touch /tmp/x')],
      ['PostUp without spaces', withLine('PostUp=touch /tmp/x')],
      ['PostUp indented', withLine('  PostUp = touch /tmp/x')],
      ['PostUp in a [Peer]', withLine('PostUp = touch /tmp/x', '[Peer]\n')],
      ['DNS (resolvconf as root)', withLine('DNS = 192.0.2.53')],
      ['SaveConfig', withLine('SaveConfig = true')],
      ['FwMark', withLine('FwMark = 0x1234')],
      ['a command in Table', good.replace('Table = off', 'Table = off; touch /tmp/x')],
      ['a command substitution in Address', good.replace('Address = 100.64.2.11/10', 'Address = $(touch /tmp/x)')],
      ['a glob in Address', good.replace('Address = 100.64.2.11/10', 'Address = /etc/*')],
      ['a semicolon in Endpoint', good.replace('192.0.2.12:51820', '192.0.2.12:51820;id')],
      ['arithmetic in MTU', good.replace('MTU = 1420', 'MTU = a[$(id)]')],
      ['a short key', good.replace(`PrivateKey = ${KEYS[0]}`, 'PrivateKey = abc=')],
      [
        'a key after a value, behind a comment sign',
        good.replace(`PublicKey = ${KEYS[1]}`, `PublicKey = ${KEYS[1]} # PostUp = x`),
      ],
      ['a carriage return', good.replace('MTU = 1420', 'MTU = 1420\r')],
      ['a second [Interface]', `${good}\n[Interface]\nListenPort = 1\n`],
      ['an unknown section', good.replace('[Peer]', '[Match]')],
      ['a key before any section', good.replace('\n[Interface]', '\nListenPort = 1\n[Interface]')],
      ['no managed header', good.replace('# managed by wg-overlay\n', '')],
      ['an empty file', ''],
    ];
    for (const [what, text] of hostile) {
      const r = check(text);
      assert.equal(r.ok, false, `${what} should be refused`);
      assert.ok(r.problems.length > 0);
      for (const p of r.problems) {
        assert.match(p, /^line \d+: /, what);
        assert.ok(!p.includes('/tmp/x') && !p.includes(KEYS[0]!), `${what}: a value is printed: ${p}`);
      }
    }
  });

  it('names the line and the key', () => {
    const r = check(renderWgQuick(FULL).replace('[Interface]\n', '[Interface]\nPostUp = rm -rf /\n'));
    assert.deepEqual(r.problems, ['line 5: key PostUp is not one wg-overlay writes in [Interface]']);
  });
});
