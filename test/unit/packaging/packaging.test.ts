/**
 * The package description and what it ships, checked without building a package: nfpm.yaml
 * against nfpm's own JSON schema and as each packager sees it, the systemd unit's directives,
 * the RBAC manifest against the API calls the code makes, the maintainer scripts, and the
 * bundled runtime. (Building and installing the packages is test/system.)
 *
 * `yaml`, `ajv` and packaging/nfpm-lite.mjs are loaded with dynamic imports, so the TypeScript
 * build never depends on them.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DEFAULT_CONFIG_PATH, defaultConfig } from '../../../service/src/config/config.js';
import { EXIT_CONFIG } from '../../../service/src/exit-status.js';
import { EXTERNAL_PEER_GROUP, EXTERNAL_PEER_PLURAL } from '../../../service/src/kube/external-peer-translate.js';
import { VERSION } from '../../../service/src/version.js';

// ---- helpers ---------------------------------------------------------------------------------

interface LiteContent {
  dst: string;
  type: string;
  src?: string;
  mode?: number;
  target?: string;
}
interface LitePackage {
  packager: 'deb' | 'rpm';
  name: string;
  arch: string;
  version: string;
  prerelease: string;
  release: string;
  relations: Record<'depends' | 'recommends' | 'suggests' | 'conflicts' | 'provides' | 'replaces', string[]>;
  contents: LiteContent[];
  scripts: Record<string, string>;
}
interface NfpmLite {
  readNfpmYaml(file: string): Record<string, unknown>;
  resolvePackage(
    raw: Record<string, unknown>,
    packager: 'deb' | 'rpm',
    opts?: { root?: string; env?: Record<string, string | undefined> },
  ): LitePackage;
  conventionalFileName(p: LitePackage): string;
  fullVersion(p: LitePackage): string;
  expandEnv(text: string, env?: Record<string, string | undefined>): string;
}

const dynamicImport = (spec: string): Promise<Record<string, unknown>> =>
  import(spec) as Promise<Record<string, unknown>>;
const lite = async (): Promise<NfpmLite> =>
  (await dynamicImport(pathToFileURL(resolve('packaging/nfpm-lite.mjs')).href)) as unknown as NfpmLite;

/** All YAML documents of a text, parsed like nfpm does (YAML 1.1: `0644` is octal). */
async function parseYamlAll(text: string): Promise<unknown[]> {
  const YAML = (await dynamicImport('yaml')).default as {
    parseAllDocuments(t: string, o: object): Array<{ toJS(): unknown; errors: unknown[] }>;
  };
  return YAML.parseAllDocuments(text, { version: '1.1' }).map((d) => {
    if (d.errors.length > 0) throw new Error(`YAML error: ${String(d.errors[0])}`);
    return d.toJS();
  });
}

/** Parses a systemd unit file: section → key → values in order. */
function parseUnit(text: string): Record<string, Record<string, string[]>> {
  const out: Record<string, Record<string, string[]>> = {};
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const sec = /^\[(.+)\]$/.exec(line);
    if (sec) {
      section = sec[1]!;
      out[section] ??= {};
      continue;
    }
    const kv = /^([A-Za-z0-9]+)=(.*)$/.exec(line);
    if (!kv) throw new Error(`not a unit file line: ${line}`);
    ((out[section] ??= {})[kv[1]!] ??= []).push(kv[2]!);
  }
  return out;
}

const ENV = { WG_OVERLAY_VERSION: '1.2.3' };

// ---- nfpm.yaml ----------------------------------------------------------------------------

describe('unit: packaging: nfpm.yaml', () => {
  it("validates against nfpm's JSON schema", async () => {
    const Ajv2020 = (await dynamicImport('ajv/dist/2020.js')).default as new (o: object) => {
      compile(s: object): ((d: unknown) => boolean) & {
        errors?: Array<{ instancePath: string; message?: string; params?: unknown }> | null;
      };
    };
    const schema = JSON.parse(
      readFileSync('/work/shared/reference/nfpm/schema.json', 'utf8').replace(/^\uFEFF/, ''),
    ) as object;
    const validate = new Ajv2020({ allErrors: true, strict: false, formats: { 'date-time': true } }).compile(schema);
    const [doc] = await parseYamlAll(readFileSync('nfpm.yaml', 'utf8'));
    const ok = validate(doc);
    assert.ok(
      ok,
      'nfpm.yaml does not match the schema:\n' +
        (validate.errors ?? [])
          .map((e) => `${e.instancePath || '/'}: ${e.message} ${JSON.stringify(e.params)}`)
          .join('\n'),
    );
    // And the schema really is checked: a wrong field is caught.
    assert.equal(validate({ ...(doc as object), contents: [{ dst: '/x', type: 'nonsense' }] }), false);
    assert.equal(validate({ ...(doc as object), no_such_field: 1 }), false);
  });

  it('as the .deb: Debian dependency syntax, /lib/systemd/system, conffile, deb maintainer scripts', async () => {
    const l = await lite();
    const p = l.resolvePackage(l.readNfpmYaml('nfpm.yaml'), 'deb', { env: ENV });
    assert.equal(p.name, 'wg-overlay');
    assert.equal(p.arch, 'all');
    assert.equal(l.fullVersion(p), '1.2.3-1');
    assert.equal(l.conventionalFileName(p), 'wg-overlay_1.2.3-1_all.deb');
    assert.deepEqual(p.relations.depends, [
      'nodejs (>= 18.19)',
      'wireguard-tools',
      'iproute2',
      'procps',
      'polkitd (>= 121)',
      'nftables',
    ]);
    assert.deepEqual(p.relations.suggests, ['wireguard-go']);
    assert.deepEqual(p.relations.recommends, []);
    const dsts = p.contents.map((c) => c.dst);
    assert.ok(dsts.includes('/lib/systemd/system/wg-overlay.service'));
    assert.ok(!dsts.includes('/usr/lib/systemd/system/wg-overlay.service'));
    assert.ok(dsts.includes('/lib/systemd/system/wg-overlay-fail-closed.service'));
    assert.deepEqual(
      p.contents.filter((c) => c.type.startsWith('config')).map((c) => [c.dst, c.type]),
      [['/etc/wg-overlay/wg-overlay.conf', 'config|noreplace']],
    );
    assert.deepEqual(Object.keys(p.scripts).sort(), ['postinstall', 'postremove', 'preremove']);
    for (const f of Object.values(p.scripts)) assert.match(f, /packaging\/scripts\/deb\//);
    // The lintian overrides, and the changelog nfpm makes from packaging/changelog.yaml.
    assert.ok(dsts.includes('/usr/share/lintian/overrides/wg-overlay'));
    assert.equal(p.contents.find((c) => c.dst === '/usr/share/doc/wg-overlay/changelog.Debian.gz')?.mode, 0o644);
  });

  it('as the .rpm: RPM dependency syntax and names, /usr/lib/systemd/system, rpm scriptlets', async () => {
    const l = await lite();
    const p = l.resolvePackage(l.readNfpmYaml('nfpm.yaml'), 'rpm', { env: ENV });
    assert.equal(p.arch, 'noarch');
    assert.equal(l.conventionalFileName(p), 'wg-overlay-1.2.3-1.noarch.rpm');
    assert.deepEqual(p.relations.depends, [
      'nodejs >= 18.19',
      'wireguard-tools',
      'iproute',
      '/usr/bin/kill',
      'polkit',
      'nftables',
      '/usr/bin/setpriv',
      '/usr/bin/unshare',
      'perl(Socket)',
      'perl(POSIX)',
    ]);
    assert.deepEqual(p.relations.suggests, ['wireguard-go']);
    const dsts = p.contents.map((c) => c.dst);
    assert.ok(dsts.includes('/usr/lib/systemd/system/wg-overlay.service'));
    assert.ok(!dsts.includes('/lib/systemd/system/wg-overlay.service'));
    assert.ok(dsts.includes('/usr/lib/systemd/system/wg-overlay-fail-closed.service'));
    assert.ok(!dsts.some((d) => d.startsWith('/usr/share/lintian/') || d.endsWith('changelog.Debian.gz')));
    for (const f of Object.values(p.scripts)) assert.match(f, /packaging\/scripts\/rpm\//);
  });

  it('ships the runtime, command, unit, config, manifests and docs with the right modes, from files that exist', async () => {
    const l = await lite();
    const raw = l.readNfpmYaml('nfpm.yaml');
    for (const packager of ['deb', 'rpm'] as const) {
      // The bundle, the manual pages and the completion are build products: left out of the source check.
      const p = l.resolvePackage(
        {
          ...raw,
          contents: (raw.contents as Array<Record<string, unknown>>).filter(
            (c) => !String(c.src ?? '').startsWith('build/'),
          ),
        },
        packager,
        { env: ENV },
      );
      const byDst = new Map(p.contents.map((c) => [c.dst, c]));
      assert.equal(byDst.get('/usr/bin/wg-overlay')?.mode, 0o755);
      assert.equal(byDst.get('/etc/wg-overlay/wg-overlay.conf')?.mode, 0o644);
      assert.equal(byDst.get('/etc/wg-overlay')?.type, 'dir');
      for (const f of [
        '/usr/share/wg-overlay/kubernetes/rbac.yaml',
        '/usr/share/wg-overlay/kubernetes/node-policy.yaml',
        '/usr/share/wg-overlay/kubernetes/crd-peer.yaml',
        '/usr/share/wg-overlay/kubernetes/connect-rbac.yaml',
        '/usr/share/doc/wg-overlay/install.md',
        '/usr/share/doc/wg-overlay/metrics.md',
        '/usr/share/doc/wg-overlay/copyright',
        '/usr/share/wg-overlay/monitoring/wg-overlay-dashboard.json',
        '/usr/share/wg-overlay/monitoring/wg-overlay-alerts.yaml',
      ]) {
        assert.ok(byDst.has(f), `${packager} ships ${f}`);
      }
      // The non-root service: its user, its one D-Bus permission, the helpers, the wg-quick@ drop-in.
      assert.equal(byDst.get('/usr/lib/sysusers.d/wg-overlay.conf')?.mode, 0o644);
      assert.equal(byDst.get('/usr/share/polkit-1/rules.d/10-wg-overlay.rules')?.mode, 0o644);
      for (const h of ['notify-socket', 'secrets-access', 'polkit-interface', 'wg-quick-hook', 'wireguard-go'])
        assert.equal(byDst.get(`/usr/lib/wg-overlay/${h}`)?.mode, 0o755, h);
      const unitDir = packager === 'deb' ? '/lib/systemd/system' : '/usr/lib/systemd/system';
      assert.equal(
        byDst.get(`${unitDir}/wg-quick@.service.d/wg-overlay.conf`)?.src,
        resolve('systemd/wg-quick@.service.d/wg-overlay.conf'),
      );
      for (const c of p.contents) if (c.src) assert.ok(statSync(c.src).isFile(), `${c.src} exists`);
    }
    // What packaging/build.sh makes before packaging: the bundle and packaging/docs.mjs's files.
    assert.deepEqual(
      (raw.contents as Array<Record<string, unknown>>)
        .filter((c) => String(c.src ?? '').startsWith('build/'))
        .map((c) => [c.src, c.dst, c.type ?? '']),
      [
        ['build/bundle/wg-overlay.mjs', '/usr/lib/wg-overlay/wg-overlay.mjs', ''],
        ['build/doc/wg-overlay.8.gz', '/usr/share/man/man8/wg-overlay.8.gz', 'doc'],
        ['build/doc/wg-overlay.conf.5.gz', '/usr/share/man/man5/wg-overlay.conf.5.gz', 'doc'],
        ['build/doc/wg-overlay.bash', '/usr/share/bash-completion/completions/wg-overlay', ''],
      ],
    );
    assert.match(readFileSync('packaging/build.sh', 'utf8'), /^node packaging\/docs\.mjs build\/doc "\$version"$/m);
    // The wrapper runs exactly that file.
    assert.match(
      readFileSync('packaging/wrapper/wg-overlay', 'utf8'),
      /exec "\$node" \/usr\/lib\/wg-overlay\/wg-overlay\.mjs "\$@"/,
    );
  });

  it('nfpm-lite follows nfpm: env expansion, semver prerelease as ~, and refuses what it cannot build', async () => {
    const l = await lite();
    assert.equal(l.expandEnv('v${A}-$B-${C}', { A: '1', B: '2' }), 'v1-2-');
    const raw = l.readNfpmYaml('nfpm.yaml');
    const pre = l.resolvePackage(raw, 'deb', { env: { WG_OVERLAY_VERSION: '2.0.0-rc1' } });
    assert.equal(l.fullVersion(pre), '2.0.0~rc1-1');
    assert.throws(() => l.resolvePackage(raw, 'deb', { env: {} }), /version is empty/);
    assert.throws(() => l.resolvePackage({ ...raw, apk: {} }, 'deb', { env: ENV }), /unsupported field "apk"/);
    assert.throws(
      () => l.resolvePackage({ ...raw, changelog: 'no-such-changelog.yaml' }, 'deb', { env: ENV }),
      /changelog .*no-such-changelog\.yaml does not exist/,
    );
    assert.throws(
      () => l.resolvePackage({ ...raw, contents: [{ src: 'x', dst: '/x', type: 'tree' }] }, 'deb', { env: ENV }),
      /contents type "tree"/,
    );
  });

  it('packaging/build.sh is the one build command: nfpm when on PATH, else nfpm-lite on the same nfpm.yaml', () => {
    const sh = readFileSync('packaging/build.sh', 'utf8');
    assert.match(sh, /command -v nfpm/);
    assert.match(sh, /nfpm package --config nfpm\.yaml --packager "\$p"/);
    assert.match(sh, /node packaging\/nfpm-lite\.mjs "\$p" --config nfpm\.yaml/);
    const r = spawnSync('bash', ['-n', 'packaging/build.sh']);
    assert.equal(r.status, 0, r.stderr.toString());
  });
});

// ---- the systemd unit ---------------------------------------------------------------------

describe('unit: packaging: systemd/wg-overlay.service', () => {
  const unit = parseUnit(readFileSync('systemd/wg-overlay.service', 'utf8'));
  const svc = unit.Service ?? {};
  const one = (k: string): string | undefined => {
    const v = svc[k];
    assert.ok(!v || v.length === 1, `${k} is set once`);
    return v?.[0];
  };

  it('is Type=notify with NotifyAccess=main (READY=1 is written by the daemon itself to the socket notify-socket hands it)', () => {
    assert.equal(one('Type'), 'notify');
    assert.equal(one('NotifyAccess'), 'main');
    assert.match(one('ExecStart') ?? '', /^\/usr\/lib\/wg-overlay\/notify-socket \//);
  });

  it(
    'runs the packaged runtime (jitless) on the default config; reload sends SIGHUP; first, as root: ' +
      'credentials readable, interface recorded',
    () => {
      assert.equal(
        one('ExecStart'),
        '/usr/lib/wg-overlay/notify-socket /usr/bin/node --jitless --no-expose-wasm --optimize-for-size --no-memory-reducer ' +
          `/usr/lib/wg-overlay/wg-overlay.mjs run --config ${DEFAULT_CONFIG_PATH}`,
      );
      // The same runtime the command runs.
      assert.match(readFileSync('packaging/wrapper/wg-overlay', 'utf8'), /^node=\/usr\/bin\/node$/m);
      assert.equal(one('ExecReload'), '/bin/kill -HUP $MAINPID');
      assert.deepEqual(unit.Service?.ExecStartPre, [
        `+/usr/lib/wg-overlay/secrets-access ${DEFAULT_CONFIG_PATH}`,
        `+/usr/lib/wg-overlay/polkit-interface write ${DEFAULT_CONFIG_PATH}`,
      ]);
    },
  );

  it('restarts on failure within a start limit, but not on exit status 78 (EX_CONFIG)', () => {
    assert.equal(one('Restart'), 'on-failure');
    assert.equal(one('RestartPreventExitStatus'), String(EXIT_CONFIG));
    assert.equal(EXIT_CONFIG, 78);
    assert.ok(unit.Unit?.StartLimitBurst && unit.Unit.StartLimitIntervalSec, 'a start limit in [Unit]');
  });

  it('logs under SyslogIdentifier=wg-overlay with level prefixes', () => {
    assert.equal(one('SyslogIdentifier'), 'wg-overlay');
    assert.notEqual(one('SyslogLevelPrefix'), 'no');
  });

  it('runs as the system user wg-overlay with CAP_NET_ADMIN only', () => {
    assert.equal(one('User'), 'wg-overlay');
    assert.equal(one('Group'), 'wg-overlay');
    assert.match(
      readFileSync('packaging/sysusers/wg-overlay.conf', 'utf8'),
      /^u wg-overlay - "[^"]+" \/var\/lib\/wg-overlay -$/m,
    );
    assert.equal(one('CapabilityBoundingSet'), 'CAP_NET_ADMIN');
    assert.equal(one('AmbientCapabilities'), 'CAP_NET_ADMIN');
    assert.equal(one('NoNewPrivileges'), 'yes');
    assert.equal(svc.SupplementaryGroups, undefined);
  });

  it("is sandboxed: strict read-only system with exactly the daemon's write paths, no devices, no W+X memory, kubelet and PKI out of sight", () => {
    assert.equal(one('ProtectSystem'), 'strict');
    assert.equal(one('ProtectHome'), 'yes');
    assert.equal(one('PrivateTmp'), 'yes');
    assert.equal(one('PrivateDevices'), 'yes');
    assert.equal(one('ProtectKernelTunables'), 'yes');
    assert.equal(one('RestrictAddressFamilies'), 'AF_UNIX AF_INET AF_INET6 AF_NETLINK');
    assert.equal(one('MemoryDenyWriteExecute'), 'yes');
    assert.equal(svc.ReadWritePaths, undefined, 'nothing writable beyond its own directories');
    const d = defaultConfig();
    assert.equal(one('StateDirectory'), 'wg-overlay wg-overlay/wireguard');
    assert.equal(`/var/lib/${one('StateDirectory')!.split(' ')[0]}`, d.state.dir);
    assert.equal(one('StateDirectoryMode'), '0700');
    assert.equal(`/run/${one('RuntimeDirectory')}`, d.state.runtimeDir);
    // The daemon's /etc/wireguard is its own directory; wg-quick@ installs what it writes there.
    assert.equal(one('BindPaths'), `${d.state.dir}/wireguard:${dirname(d.wireguard.configFile)}`);
    const hidden = one('InaccessiblePaths')!.split(' ');
    for (const p of ['-/var/lib/kubelet', '-/etc/kubernetes', '-/etc/ssl/private'])
      assert.ok(hidden.includes(p), `${p} in InaccessiblePaths`);
  });

  it('has memory, task and CPU limits', () => {
    assert.equal(one('MemoryHigh'), '320M');
    assert.equal(one('MemoryMax'), '512M');
    assert.equal(one('TasksMax'), '64');
    assert.equal(one('CPUQuota'), '100%');
  });

  it('is enabled by multi-user.target', () => {
    assert.deepEqual(unit.Install?.WantedBy, ['multi-user.target']);
  });
});

// ---- RBAC -----------------------------------------------------------------------------------

/** Kubernetes API calls of client-node → the RBAC grant each needs ("group/resource verb"). */
const API_CALLS: Record<string, (args: string) => string[]> = {
  listNode: () => ['/nodes list'],
  readNode: () => ['/nodes get'],
  patchNode: () => ['/nodes patch'],
  listClusterCustomObject: (args) =>
    args.includes('EXTERNAL_PEER_GROUP') && args.includes('EXTERNAL_PEER_PLURAL')
      ? [`${EXTERNAL_PEER_GROUP}/${EXTERNAL_PEER_PLURAL} list`]
      : [`unknown custom object ${args}`],
  // The reflector's own interface: the grants come from where its list and watch are made (below).
  list: () => [],
  watch: () => [],
  // The location leader Leases (kube/location-leases.ts): POST and PUT of a Lease.
  create: () => ['coordination.k8s.io/leases create'],
  replace: () => ['coordination.k8s.io/leases update'],
};
/** Collection paths → resources (a GET of a collection is a list; a watch stream is a watch). */
const PATHS: Record<string, string> = {
  NODES_PATH: '/nodes',
  EXTERNAL_PEER_API_PATH: `${EXTERNAL_PEER_GROUP}/${EXTERNAL_PEER_PLURAL}`,
  leasesPath: 'coordination.k8s.io/leases',
};

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** A rule of a Role or ClusterRole. */
interface RbacRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

/** One document of rbac.yaml, with the fields these tests read. */
interface RbacDoc {
  kind: string;
  metadata: { name: string; namespace?: string };
  rules?: RbacRule[];
  subjects?: unknown;
  roleRef?: unknown;
}

/** The documents of packaging/kubernetes/rbac.yaml. */
async function rbacDocs(): Promise<RbacDoc[]> {
  return (await parseYamlAll(readFileSync('packaging/kubernetes/rbac.yaml', 'utf8'))) as RbacDoc[];
}

describe('unit: packaging: packaging/kubernetes/rbac.yaml', () => {
  it(
    'is a Namespace, a ServiceAccount, a ClusterRole, a Role for the Leases in its namespace and their ' +
      'bindings: no long-lived token Secret',
    async () => {
      const docs = await rbacDocs();
      assert.deepEqual(
        docs.map((d) => d.kind),
        ['Namespace', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding'],
      );
      const role = docs.find((d) => d.kind === 'Role');
      assert.equal(role?.metadata.namespace, 'wg-overlay', 'the Leases are granted in the namespace only');
      assert.deepEqual(docs.find((d) => d.kind === 'RoleBinding')?.subjects, [
        { kind: 'ServiceAccount', name: 'wg-overlay', namespace: 'wg-overlay' },
      ]);
      const kind = (k: string) => docs.find((d) => d.kind === k);
      assert.equal(kind('Namespace')?.metadata.name, 'wg-overlay');
      const sa = kind('ServiceAccount');
      assert.deepEqual([sa?.metadata.name, sa?.metadata.namespace], ['wg-overlay', 'wg-overlay']);
      const crb = kind('ClusterRoleBinding');
      assert.deepEqual(crb?.roleRef, {
        apiGroup: 'rbac.authorization.k8s.io',
        kind: 'ClusterRole',
        name: kind('ClusterRole')?.metadata.name,
      });
      assert.deepEqual(crb?.subjects, [{ kind: 'ServiceAccount', name: 'wg-overlay', namespace: 'wg-overlay' }]);
      for (const f of ['rbac.yaml', 'node-policy.yaml', 'crd-peer.yaml']) {
        const text = readFileSync(`packaging/kubernetes/${f}`, 'utf8');
        assert.doesNotMatch(text, /kind:\s*Secret|service-account-token|^\s*token:/m, `${f} carries no token`);
      }
    },
  );

  it('grants no get, create, update or delete on Nodes, nor anything on their subresources', async () => {
    const docs = await rbacDocs();
    const rules = docs.find((d) => d.kind === 'ClusterRole')!.rules!;
    const nodeRules = rules.filter(
      (r) => r.apiGroups.includes('') && r.resources.some((x) => x === 'nodes' || x.startsWith('nodes/') || x === '*'),
    );
    assert.deepEqual(
      nodeRules.map((r) => [r.resources, r.verbs]),
      [[['nodes'], ['list', 'watch', 'patch']]],
    );
  });

  it('the ClusterRole and the Role grant exactly the verbs the code uses, found by scanning service/src for API calls', async () => {
    const used = new Set<string>();
    const unknown: string[] = [];
    for (const file of tsFiles('service/src')) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/\b(?:api|this\.api|\w+Api)\.(\w+)\(([^)]*)\)?/g)) {
        const grant = API_CALLS[m[1]!];
        if (!grant) unknown.push(`${file}: ${m[1]}`);
        else for (const g of grant(m[2] ?? '')) used.add(g);
      }
      // Raw requests (kube/api-http.ts): GETs of a collection and watch streams, by path constant.
      for (const m of text.matchAll(/\b(getJson|watchStream)\(\s*[\w.]+,\s*([^,]+),/g)) {
        if (file.endsWith('api-http.ts')) continue;
        const res = PATHS[m[2]!.trim()];
        if (!res) unknown.push(`${file}: ${m[1]} of ${m[2]}`);
        else used.add(`${res} ${m[1] === 'getJson' ? 'list' : 'watch'}`);
      }
      if (/new k8s\.Watch\(|makeInformer\(/.test(text)) unknown.push(`${file}: a client-node watch or informer`);
    }
    assert.deepEqual(unknown, [], 'API calls this test does not know: add them to API_CALLS/PATHS and to rbac.yaml');
    assert.ok(used.size > 0);
    const docs = await rbacDocs();
    const granted = new Set<string>();
    for (const role of docs.filter((d) => d.kind === 'ClusterRole' || d.kind === 'Role')) {
      for (const r of role.rules ?? []) {
        for (const g of r.apiGroups)
          for (const res of r.resources) for (const v of r.verbs) granted.add(`${g}/${res} ${v}`);
      }
    }
    assert.deepEqual([...granted].sort(), [...used].sort());
  });
});

describe('unit: packaging: packaging/kubernetes/connect-rbac.yaml (wg-overlay connect)', () => {
  const PEERS = `${EXTERNAL_PEER_GROUP}/${EXTERNAL_PEER_PLURAL}`;
  /** What a call in connect's code (or in a part it starts) asks of the API server. */
  const CONNECT_CALLS: Array<[RegExp, string[]]> = [
    [/\blistNodes\(/, ['/nodes list']],
    [/\bnodeSource\(/, ['/nodes list', '/nodes watch']],
    [/\blistExternalPeers\(/, [`${PEERS} list`]],
    [/\bexternalPeerSource\(/, [`${PEERS} list`, `${PEERS} watch`]],
    [/\bgetJson\(kc, EXTERNAL_PEER_API_PATH/, [`${PEERS} list`]],
    [/method: 'POST'/, [`${PEERS} create`]],
    [/method: 'PUT'/, [`${PEERS} update`]],
    [/method: 'DELETE'/, [`${PEERS} delete`]],
    // The location Leases, followed and never written (LocationLeases.follow: the reflector only).
    [/\.follow\(\)/, ['coordination.k8s.io/leases list', 'coordination.k8s.io/leases watch']],
  ];
  const files = [...tsFiles('service/src/connect'), 'service/src/kube/peer-resource.ts', 'service/src/cli/connect.ts'];

  it('grants exactly what the code of connect asks for, and connect writes nothing but its Peer', async () => {
    const used = new Set<string>();
    for (const f of files) {
      const text = readFileSync(f, 'utf8');
      for (const [re, grants] of CONNECT_CALLS) if (re.test(text)) for (const g of grants) used.add(g);
      assert.doesNotMatch(
        text,
        /patchAnnotations|NodePublisher|\.want\(|leases\.create|\.replace\(lease/,
        `${f} writes only its Peer`,
      );
    }
    type Rule = { apiGroups: string[]; resources: string[]; verbs: string[] };
    type Doc = { kind: string; metadata: { namespace?: string }; rules?: Rule[] };
    const docs = (await parseYamlAll(readFileSync('packaging/kubernetes/connect-rbac.yaml', 'utf8'))) as Doc[];
    const granted = new Set<string>();
    for (const role of docs.filter((d) => d.kind === 'ClusterRole' || d.kind === 'Role'))
      for (const r of role.rules ?? [])
        for (const g of r.apiGroups)
          for (const res of r.resources) for (const v of r.verbs) granted.add(`${g}/${res} ${v}`);
    assert.deepEqual([...granted].sort(), [...used].sort());
    assert.equal(
      docs.find((d) => d.kind === 'Role')?.metadata.namespace,
      'wg-overlay',
      'the Leases in the namespace only',
    );
    assert.doesNotMatch(readFileSync('packaging/kubernetes/connect-rbac.yaml', 'utf8'), /kind:\s*Secret|^\s*token:/m);
  });

  it('is what the 403 messages and the install guide name', () => {
    const text = readFileSync('service/src/kube/peer-resource.ts', 'utf8');
    assert.match(text, /\/usr\/share\/wg-overlay\/kubernetes\/connect-rbac\.yaml/);
    assert.match(readFileSync('README.md', 'utf8'), /connect-rbac\.yaml/);
  });
});

// ---- maintainer scripts -------------------------------------------------------------------

describe('unit: packaging: maintainer scripts', () => {
  const scripts = ['deb/postinst', 'deb/prerm', 'deb/postrm', 'rpm/post', 'rpm/preun', 'rpm/postun'].map(
    (s) => `packaging/scripts/${s}`,
  );

  it('are executable POSIX sh', () => {
    for (const s of scripts) {
      assert.equal(statSync(s).mode & 0o777, 0o755, `${s} mode`);
      assert.match(readFileSync(s, 'utf8'), /^#!\/bin\/sh\n/);
      const r = spawnSync('sh', ['-n', s]);
      assert.equal(r.status, 0, `${s}: ${r.stderr.toString()}`);
      const d = spawnSync('dash', ['-n', s]);
      if (d.error === undefined) assert.equal(d.status, 0, `${s} (dash): ${d.stderr.toString()}`);
    }
  });

  it("the .deb purge deletes only wg-quick files that carry wg-overlay's header", async () => {
    const { MANAGED_HEADER } = await import('../../../service/src/wireguard/wgquick.js');
    assert.match(
      readFileSync('packaging/scripts/deb/postrm', 'utf8'),
      new RegExp(`\\[ "\\$\\(head -n 1 "\\$f"\\)" = "${MANAGED_HEADER}" \\]`),
    );
  });
});

// ---- the bundled runtime ------------------------------------------------------------------

describe('unit: packaging: the bundled runtime', function () {
  this.timeout(60_000);
  let dir: string;
  let bundle: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'wgo-bundle-'));
    bundle = join(dir, 'wg-overlay.mjs');
    const r = spawnSync('node', ['packaging/bundle.mjs', bundle, '9.8.7'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('is one ES module that runs on its own (no node_modules next to it) and carries the package version', () => {
    assert.equal(readdirSync(dir).join(','), basename(bundle));
    const v = spawnSync('node', [bundle, 'version'], { encoding: 'utf8', cwd: dir });
    assert.equal(v.stdout, 'wg-overlay 9.8.7\n');
    const c = spawnSync('node', [bundle, 'check-config', '--config', resolve('packaging/wg-overlay.conf')], {
      encoding: 'utf8',
      cwd: dir,
    });
    assert.equal(c.status, 0, c.stderr);
    const k = spawnSync('node', [bundle, 'kubeconfig', '--help'], { encoding: 'utf8', cwd: dir });
    assert.match(k.stdout, /--server URL/);
    assert.notEqual(VERSION, '9.8.7');
  });
});

describe('unit: packaging docs', () => {
  it('the README carries the shipped install guide verbatim', async () => {
    const { readFile } = await import('node:fs/promises');
    const root = new URL('../../../..', import.meta.url);
    const readme = await readFile(new URL('README.md', root), 'utf8');
    const guide = await readFile(new URL('docs/install.md', root), 'utf8');
    if (!readme.includes(guide.trim()))
      throw new Error(
        'README.md\'s "Install on a node" section differs from docs/install.md (shipped as /usr/share/doc/wg-overlay/install.md): update both',
      );
  });
});
