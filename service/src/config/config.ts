/**
 * wg-overlay's configuration: `/etc/wg-overlay/wg-overlay.conf` (INI, read with the `ini`
 * package) turned into validated, fully defaulted settings. Every error names the file,
 * section, key, the bad value and what is allowed; unknown sections and keys are reported.
 */
import { hostname } from 'node:os';
import { isAbsolute } from 'node:path';
import * as ini from 'ini';
import { DEFAULT_EXTERNAL_RANGES, DEFAULT_MIN_PREFIX, DEFAULT_POD_CIDRS } from '../mesh/membership/ranges.js';
import type { EndpointSetting } from '../mesh/types.js';
import { parseCidr, parseHostPort, parseIp, isDnsName, bitsOf, formatCidr } from '../net/ip.js';
import { readText, whyUnreadable } from '../util/read-failure.js';

/** Where the daemon reads its configuration unless `--config FILE` says otherwise. */
export const DEFAULT_CONFIG_PATH = '/etc/wg-overlay/wg-overlay.conf';

export type { EndpointSetting };

/** Log levels, most verbose first. */
export const LOG_LEVELS = ['debug', 'info', 'notice', 'warning', 'error'] as const;
/** One log level. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Validated, defaulted settings. */
export interface Config {
  /** The file these settings came from ('(defaults)' when none). */
  source: string;
  kubernetes: {
    kubeconfig: string;
    nodeName: string;
    discovery: 'watch' | 'list';
    listIntervalSeconds: number;
  };
  wireguard: {
    interface: string;
    configFile: string;
    listenPort: number;
    endpoint: EndpointSetting;
    mtu: 'auto' | number;
    persistentKeepalive: number;
    apply: 'set' | 'restart';
    implementation: 'auto' | 'kernel' | 'userspace';
    createInterface: boolean;
    /** Which published endpoints of other Nodes are believed (`addresses`: only their own status.addresses). */
    publishedEndpoints: 'addresses' | 'any';
    /** Seconds without an answer before a peer's next endpoint is tried (0 = no failover). */
    endpointFailoverSeconds: number;
    /** Traffic to what the mesh carries may leave only through the tunnel (an nftables table of the daemon's own). */
    failClosed: boolean;
  };
  overlay: {
    cidr: string;
    /** The IPv6 overlay: `auto` (a unique local /48 derived from the cluster's CA), `off`, or a CIDR. */
    cidr6: 'auto' | 'off' | string;
    /** A Node's PodCIDRs must lie inside these to be routed. */
    podCidrs: string[];
    /** The widest range routed to one Node or external peer (a prefix length), by family. */
    minPrefix: { 4: number; 6: number };
    /** Ranges no route may overlap, whoever claims them (the same on every node). */
    protected: string[];
  };
  mesh: {
    /** Who tunnels to whom: every node to every node, location leaders only, or across locations only. */
    granularity: 'full' | 'location' | 'cross';
    /** The Node label that names a node's location (after the `kilo.squat.ai/location` annotation). */
    locationLabel: string;
    /** A Node label whose presence makes a node a preferred leader (like Kilo's leader annotation). */
    leaderLabel: string;
    /** Whether Kilo's location, leader and allowed-location-ips annotations (kubelet-writable) are read. */
    kiloTopology: boolean;
    /** Whether members of one location get routes to each other's pods over the private network. */
    localRoutes: boolean;
    /** Endpoints other locations can dial: `public` (no private-use address) or these CIDRs. */
    reachable: 'public' | string[];
    /** Namespace of the per-location leader Leases. */
    leaseNamespace: string;
    /** A leader that has not renewed its Lease for this long is replaced (seconds). */
    leaderLeaseSeconds: number;
  };
  state: {
    dir: string;
    /** Where the daemon writes `status.json` for `wg-overlay status` (`[state] runtime_dir`). */
    runtimeDir: string;
  };
  peers: {
    /** Extra CIDRs (e.g. the service CIDR) that `showconf peer` routes to the cluster. */
    allowedIpsExtra: string[];
    /** Where external peers' allowed IPs and Kilo's allowed-location-ips must lie. */
    allowedRanges: string[];
  };
  metrics: {
    /** `host:port` of the metrics and health server; undefined = off. */
    listen: { host: string; port: number } | undefined;
    /** Seconds the API watch may be down before /healthz fails. */
    watchDownThresholdSeconds: number;
  };
  log: {
    level: LogLevel;
  };
}

/** The result of reading a config file: the settings plus non-fatal findings. */
export interface LoadedConfig {
  config: Config;
  /** Unknown sections/keys and duplicated keys, each a complete sentence. */
  warnings: string[];
}

/** A configuration that cannot be used; `problems` lists every fault found, one sentence each. */
export class ConfigError extends Error {
  /** Every problem found, each already prefixed with the file name. */
  readonly problems: string[];

  constructor(problems: string[], options?: { cause?: unknown }) {
    super(problems.join('\n'), options);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

type Raw = Record<string, unknown>;

/** One known key: its default (as INI text, or a function of the section) and its parser. */
interface KeySpec {
  parse: (value: string, ctx: { section: Raw }) => { ok: true; value: unknown } | { ok: false; allowed: string };
}

const ok = (value: unknown) => ({ ok: true as const, value });
const bad = (allowed: string) => ({ ok: false as const, allowed });

function intIn(min: number, max: number, what: string): KeySpec['parse'] {
  return (v) =>
    /^\d+$/.test(v) && Number(v) >= min && Number(v) <= max ? ok(Number(v)) : bad(`${what} (${min}-${max})`);
}

function oneOf<T extends string>(...values: T[]): KeySpec['parse'] {
  return (v) => ((values as string[]).includes(v) ? ok(v) : bad(`one of ${values.join(', ')}`));
}

const absolutePath: KeySpec['parse'] = (v) => (isAbsolute(v) && !v.includes('\0') ? ok(v) : bad('an absolute path'));

const boolean: KeySpec['parse'] = (v) => {
  const t = v.toLowerCase();
  if (['true', 'yes', 'on', '1'].includes(t)) return ok(true);
  if (['false', 'no', 'off', '0'].includes(t)) return ok(false);
  return bad('true or false');
};

const interfaceName: KeySpec['parse'] = (v) =>
  /^[a-zA-Z0-9_=+.-]{1,15}$/.test(v) ? ok(v) : bad('an interface name of 1-15 letters, digits or _=+.-');

const endpoint: KeySpec['parse'] = (v) => {
  if (v === 'internal' || v === 'external') return ok({ mode: v });
  const hp = parseHostPort(v);
  if (hp) return ok({ mode: 'explicit', host: hp.host, port: hp.port });
  const bareV6 = v.startsWith('[') && v.endsWith(']') ? v.slice(1, -1) : v;
  if (parseIp(bareV6) || isDnsName(v)) return ok({ mode: 'explicit', host: bareV6, port: undefined });
  return bad('internal, external, or host:port');
};

const mtu: KeySpec['parse'] = (v) =>
  v === 'auto' ? ok('auto') : intIn(576, 65535, 'auto or an MTU')(v, { section: {} });

const overlayCidr: KeySpec['parse'] = (v) => {
  const c = parseCidr(v, { strict: true });
  if (!c) return bad('a network in CIDR form with no host bits set, e.g. 100.64.0.0/10');
  if (bitsOf(c.family) - c.prefix < 2) return bad('a network with room for at least two nodes');
  return ok(v.trim());
};

const overlayCidr6: KeySpec['parse'] = (v) => {
  if (v === 'auto' || v === 'off') return ok(v);
  const c = parseCidr(v, { strict: true });
  if (!c || c.family !== 6)
    return bad('auto, off, or an IPv6 network in CIDR form with no host bits set, e.g. fd00:64::/48');
  if (c.prefix > 120) return bad('an IPv6 network of /120 or larger');
  return ok(formatCidr(c));
};

const logLevel: KeySpec['parse'] = oneOf(...LOG_LEVELS);

const anyText: KeySpec['parse'] = (v) => (v.length > 0 && v.length <= 253 ? ok(v) : bad('a non-empty name'));

const cidrList: KeySpec['parse'] = (v) => {
  const items = v
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '');
  const out: string[] = [];
  for (const item of items) {
    const c = parseCidr(item);
    if (!c || !item.includes('/'))
      return bad(`a comma-separated list of CIDRs, e.g. 10.96.0.0/12 ("${item}" is not a CIDR)`);
    out.push(formatCidr(c));
  }
  return ok(out);
};

const reachable: KeySpec['parse'] = (v) => (v.trim() === 'public' ? ok('public') : cidrList(v, { section: {} }));

const labelKey: KeySpec['parse'] = (v) =>
  /^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/.test(v)
    ? ok(v)
    : bad('a Kubernetes label key such as topology.kubernetes.io/region');

const namespaceName: KeySpec['parse'] = (v) =>
  /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(v) ? ok(v) : bad('a namespace name');

const listenAddress: KeySpec['parse'] = (v) => {
  if (v === '') return ok(undefined);
  const hp = parseHostPort(v);
  if (hp && parseIp(hp.host)) return ok({ host: hp.host, port: hp.port });
  return bad('an IP address and port such as 127.0.0.1:9586 or [::1]:9586, or nothing to turn it off');
};

/** Every section and key the file may contain, with its parser. */
const SCHEMA: Record<string, Record<string, KeySpec>> = {
  kubernetes: {
    kubeconfig: { parse: absolutePath },
    node_name: { parse: anyText },
    discovery: { parse: oneOf('watch', 'list') },
    list_interval: { parse: intIn(1, 86400, 'a number of seconds') },
  },
  wireguard: {
    interface: { parse: interfaceName },
    config_file: { parse: absolutePath },
    listen_port: { parse: intIn(1, 65535, 'not a port') },
    endpoint: { parse: endpoint },
    mtu: { parse: mtu },
    persistent_keepalive: { parse: intIn(0, 65535, 'a number of seconds, 0 = off') },
    apply: { parse: oneOf('set', 'restart') },
    implementation: { parse: oneOf('auto', 'kernel', 'userspace') },
    create_interface: { parse: boolean },
    published_endpoints: { parse: oneOf('addresses', 'any') },
    endpoint_failover: {
      parse: (v) => (v === '0' ? ok(0) : intIn(5, 600, '0 (off) or a number of seconds')(v, { section: {} })),
    },
    fail_closed: { parse: boolean },
  },
  overlay: {
    cidr: { parse: overlayCidr },
    cidr6: { parse: overlayCidr6 },
    pod_cidrs: { parse: cidrList },
    min_prefix_v4: { parse: intIn(1, 32, 'a prefix length') },
    min_prefix_v6: { parse: intIn(1, 128, 'a prefix length') },
    protected: { parse: cidrList },
  },
  mesh: {
    granularity: { parse: oneOf('full', 'location', 'cross') },
    location_label: { parse: labelKey },
    leader_label: { parse: labelKey },
    kilo_topology: { parse: boolean },
    local_routes: { parse: boolean },
    reachable: { parse: reachable },
    lease_namespace: { parse: namespaceName },
    leader_lease: { parse: intIn(2, 300, 'a number of seconds') },
  },
  state: {
    dir: { parse: absolutePath },
    runtime_dir: { parse: absolutePath },
  },
  peers: {
    allowed_ips_extra: { parse: cidrList },
    allowed_ranges: { parse: cidrList },
  },
  metrics: {
    listen: { parse: listenAddress },
    watch_down_threshold: { parse: intIn(1, 86400, 'a number of seconds') },
  },
  log: {
    level: { parse: logLevel },
  },
};

/** The known sections and keys, for documentation checks and error messages. */
export const KNOWN_KEYS: Readonly<Record<string, readonly string[]>> = Object.fromEntries(
  Object.entries(SCHEMA).map(([s, keys]) => [s, Object.keys(keys)]),
);

/** The settings used when the file says nothing. */
export function defaultConfig(): Config {
  return {
    source: '(defaults)',
    kubernetes: {
      kubeconfig: '/etc/wg-overlay/kubeconfig',
      nodeName: hostname().toLowerCase(),
      discovery: 'watch',
      listIntervalSeconds: 30,
    },
    wireguard: {
      interface: 'wg0',
      configFile: '/etc/wireguard/wg0.conf',
      listenPort: 51820,
      endpoint: { mode: 'internal' },
      mtu: 'auto',
      persistentKeepalive: 0,
      apply: 'set',
      implementation: 'auto',
      createInterface: true,
      publishedEndpoints: 'addresses',
      endpointFailoverSeconds: 15,
      failClosed: true,
    },
    overlay: {
      cidr: '100.64.0.0/10',
      cidr6: 'auto',
      podCidrs: [...DEFAULT_POD_CIDRS],
      minPrefix: { ...DEFAULT_MIN_PREFIX },
      protected: [],
    },
    mesh: {
      granularity: 'full',
      locationLabel: 'topology.kubernetes.io/region',
      leaderLabel: 'node-restriction.kubernetes.io/wg-overlay-leader',
      kiloTopology: true,
      localRoutes: true,
      reachable: 'public',
      leaseNamespace: 'wg-overlay',
      leaderLeaseSeconds: 5,
    },
    state: { dir: '/var/lib/wg-overlay', runtimeDir: '/run/wg-overlay' },
    peers: { allowedIpsExtra: [], allowedRanges: [...DEFAULT_EXTERNAL_RANGES] },
    metrics: { listen: { host: '127.0.0.1', port: 9586 }, watchDownThresholdSeconds: 300 },
    log: { level: 'info' },
  };
}

/** Renders a value as INI text the way the `ini` package would have handed it to us. */
function asText(v: unknown): string | undefined {
  if (typeof v === 'string') return v.trim();
  if (typeof v === 'boolean') return String(v);
  return undefined;
}

/**
 * Checks the raw lines for what `ini` would silently accept: lines that are neither a section,
 * a comment nor `key = value`, keys outside any section, and keys given twice.
 */
function scanLines(text: string, file: string): { errors: string[]; warnings: string[] } {
  const errors: string[] = [];
  const warnings: string[] = [];
  let section: string | undefined;
  const seen = new Set<string>();
  text.split(/\r?\n/).forEach((rawLine, i) => {
    const line = rawLine.trim();
    const at = `${file}:${i + 1}`;
    if (line === '' || line.startsWith('#') || line.startsWith(';')) return;
    const sec = /^\[([^\]]*)\]$/.exec(line);
    if (sec) {
      section = (sec[1] ?? '').trim();
      return;
    }
    const kv = /^([^=]+?)\s*=(.*)$/.exec(line);
    if (!kv) {
      errors.push(`${at}: malformed line "${line}": expected [section], key = value, or a # comment`);
      return;
    }
    const key = (kv[1] ?? '').trim();
    if (section === undefined) {
      errors.push(
        `${at}: "${key}" is outside any section: put it under one of ${Object.keys(SCHEMA)
          .map((s) => `[${s}]`)
          .join(', ')}`,
      );
      return;
    }
    const id = `${section}\u0000${key}`;
    if (seen.has(id)) warnings.push(`${at}: [${section}] ${key} is set more than once; the last value wins`);
    seen.add(id);
  });
  return { errors, warnings };
}

/** Each known key's parsed value by section; unknown ones become warnings, bad values errors. */
function sectionValues(
  raw: Raw,
  file: string,
  errors: string[],
  warnings: string[],
): Record<string, Record<string, unknown>> {
  const values: Record<string, Record<string, unknown>> = {};
  for (const [sectionName, sectionValue] of Object.entries(raw)) {
    const spec = SCHEMA[sectionName];
    if (typeof sectionValue !== 'object' || sectionValue === null) continue; // keys outside sections: reported by scanLines
    if (!spec) {
      warnings.push(
        `${file}: unknown section [${sectionName}] (ignored); known sections: ${Object.keys(SCHEMA).join(', ')}`,
      );
      continue;
    }
    const section = sectionValue as Raw;
    values[sectionName] = {};
    for (const [key, value] of Object.entries(section)) {
      const keySpec = spec[key];
      if (!keySpec) {
        warnings.push(
          `${file}: [${sectionName}] ${key}: unknown key (ignored); known keys: ${Object.keys(spec).join(', ')}`,
        );
        continue;
      }
      const textValue = asText(value);
      if (textValue === undefined) {
        errors.push(`${file}: [${sectionName}] ${key}: expected a single value`);
        continue;
      }
      const res = keySpec.parse(textValue, { section });
      if (!res.ok) {
        errors.push(
          `${file}: [${sectionName}] ${key} = "${textValue}": ${res.allowed.startsWith('not ') ? res.allowed : `expected ${res.allowed}`}`,
        );
        continue;
      }
      values[sectionName]![key] = res.value;
    }
  }
  return values;
}

/** Parses and validates config text; throws ConfigError listing every problem. */
export function parseConfig(text: string, file: string): LoadedConfig {
  const scan = scanLines(text, file);
  const errors = [...scan.errors];
  const warnings = [...scan.warnings];
  let raw: Raw;
  try {
    raw = ini.parse(text) as Raw;
  } catch (cause) {
    throw new ConfigError([`${file}: cannot be parsed as INI`], { cause });
  }
  const values = sectionValues(raw, file, errors, warnings);
  if (errors.length > 0) throw new ConfigError(errors);
  const cfg = defaultConfig();
  cfg.source = file;

  const k = values.kubernetes ?? {};
  const w = values.wireguard ?? {};
  const set = <T>(v: unknown, fallback: T): T => (v === undefined ? fallback : (v as T));
  cfg.kubernetes.kubeconfig = set(k.kubeconfig, cfg.kubernetes.kubeconfig);
  cfg.kubernetes.nodeName = set(k.node_name, cfg.kubernetes.nodeName);
  cfg.kubernetes.discovery = set(k.discovery, cfg.kubernetes.discovery);
  cfg.kubernetes.listIntervalSeconds = set(k.list_interval, cfg.kubernetes.listIntervalSeconds);
  cfg.wireguard.interface = set(w.interface, cfg.wireguard.interface);
  cfg.wireguard.configFile =
    w.config_file !== undefined ? (w.config_file as string) : `/etc/wireguard/${cfg.wireguard.interface}.conf`;
  cfg.wireguard.listenPort = set(w.listen_port, cfg.wireguard.listenPort);
  cfg.wireguard.endpoint = set(w.endpoint, cfg.wireguard.endpoint);
  cfg.wireguard.mtu = set(w.mtu, cfg.wireguard.mtu);
  cfg.wireguard.persistentKeepalive = set(w.persistent_keepalive, cfg.wireguard.persistentKeepalive);
  cfg.wireguard.apply = set(w.apply, cfg.wireguard.apply);
  cfg.wireguard.implementation = set(w.implementation, cfg.wireguard.implementation);
  cfg.wireguard.createInterface = set(w.create_interface, cfg.wireguard.createInterface);
  cfg.wireguard.publishedEndpoints = set(w.published_endpoints, cfg.wireguard.publishedEndpoints);
  cfg.wireguard.endpointFailoverSeconds = set(w.endpoint_failover, cfg.wireguard.endpointFailoverSeconds);
  cfg.wireguard.failClosed = set(w.fail_closed, cfg.wireguard.failClosed);
  cfg.overlay.cidr = set(values.overlay?.cidr, cfg.overlay.cidr);
  cfg.overlay.cidr6 = set(values.overlay?.cidr6, cfg.overlay.cidr6);
  cfg.overlay.podCidrs = set(values.overlay?.pod_cidrs, cfg.overlay.podCidrs);
  cfg.overlay.minPrefix = {
    4: set(values.overlay?.min_prefix_v4, cfg.overlay.minPrefix[4]),
    6: set(values.overlay?.min_prefix_v6, cfg.overlay.minPrefix[6]),
  };
  cfg.overlay.protected = set(values.overlay?.protected, cfg.overlay.protected);
  cfg.mesh = meshSection(values.mesh ?? {}, cfg.mesh);
  cfg.state.dir = set(values.state?.dir, cfg.state.dir);
  cfg.state.runtimeDir = set(values.state?.runtime_dir, cfg.state.runtimeDir);
  cfg.peers.allowedIpsExtra = set(values.peers?.allowed_ips_extra, cfg.peers.allowedIpsExtra);
  cfg.peers.allowedRanges = set(values.peers?.allowed_ranges, cfg.peers.allowedRanges);
  if (values.metrics && 'listen' in values.metrics)
    cfg.metrics.listen = values.metrics.listen as Config['metrics']['listen'];
  cfg.metrics.watchDownThresholdSeconds = set(
    values.metrics?.watch_down_threshold,
    cfg.metrics.watchDownThresholdSeconds,
  );
  cfg.log.level = set(values.log?.level, cfg.log.level);
  return { config: cfg, warnings };
}

/** The [mesh] section over its defaults. */
function meshSection(m: Record<string, unknown>, d: Config['mesh']): Config['mesh'] {
  const set = <T>(v: unknown, fallback: T): T => (v === undefined ? fallback : (v as T));
  return {
    granularity: set(m.granularity, d.granularity),
    locationLabel: set(m.location_label, d.locationLabel),
    leaderLabel: set(m.leader_label, d.leaderLabel),
    kiloTopology: set(m.kilo_topology, d.kiloTopology),
    localRoutes: set(m.local_routes, d.localRoutes),
    reachable: set(m.reachable, d.reachable),
    leaseNamespace: set(m.lease_namespace, d.leaseNamespace),
    leaderLeaseSeconds: set(m.leader_lease, d.leaderLeaseSeconds),
  };
}

/** Reads and validates a config file; a missing or unreadable file is a ConfigError naming it. */
export async function loadConfig(file: string = DEFAULT_CONFIG_PATH): Promise<LoadedConfig> {
  const text = await readText(file, (cause) => {
    throw new ConfigError([`${file}: ${whyUnreadable(cause)}`], { cause });
  });
  return parseConfig(text, file);
}
