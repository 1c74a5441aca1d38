/**
 * The wg-quick configuration format (`/etc/wireguard/<if>.conf`): a small parser and a
 * deterministic renderer of our own (the `ini` package merges repeated [Peer] sections), the
 * `wg setconf` form (`wg-quick strip`), and the guarded write of the file wg-overlay manages.
 */
import { chmod, mkdir, readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { dirname } from 'node:path';
import { hasErrorCode, writeFileAtomic } from '../util/atomic-file.js';
import { isValidKey } from '../mesh/membership/keys.js';

/** The [Interface] section. */
export interface WgQuickInterface {
  /** Always set when parsed; may be left out when rendering a config for someone else (`showconf`). */
  privateKey?: string;
  address: string[];
  listenPort?: number;
  mtu?: number;
  table?: string;
  /** Other keys (FwMark, DNS, PostUp, …) kept verbatim, in order. */
  extra: Array<[string, string]>;
}

/** One [Peer] section. */
export interface WgQuickPeer {
  /** Rendered as a '# name' comment line right after [Peer]. */
  name?: string;
  publicKey: string;
  presharedKey?: string;
  endpoint?: string;
  allowedIPs: string[];
  persistentKeepalive?: number;
}

/** A whole wg-quick configuration file. */
export interface WgQuickConfig {
  iface: WgQuickInterface;
  peers: WgQuickPeer[];
}

/** First line of every file wg-overlay renders; a file without it is not ours to overwrite. */
export const MANAGED_HEADER = '# managed by wg-overlay';

/** Second line of every rendered file. */
export const MANAGED_NOTICE = '# Changes are overwritten; edit /etc/wg-overlay/wg-overlay.conf instead.';

/** [Interface] keys that only wg-quick understands (dropped by `wg-quick strip`), lower-cased. */
const WG_QUICK_ONLY_KEYS = new Set([
  'address',
  'dns',
  'mtu',
  'table',
  'preup',
  'predown',
  'postup',
  'postdown',
  'saveconfig',
]);

/** Keys allowed in {@link WgQuickInterface.extra}, lower-cased: the rest of what wg and wg-quick accept. */
const EXTRA_KEYS = new Set(['fwmark', 'dns', 'preup', 'predown', 'postup', 'postdown', 'saveconfig']);

/** Compares strings by UTF-16 code units (locale-independent, so output is the same everywhere). */
function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Returns the peers in render order: by name (unnamed first), then public key. */
export function sortPeers(peers: readonly WgQuickPeer[]): WgQuickPeer[] {
  return [...peers].sort((a, b) => cmp(a.name ?? '', b.name ?? '') || cmp(a.publicKey, b.publicKey));
}

// ---------------------------------------------------------------------------------------------
// Value checks shared by the parser and the renderer; each returns a problem or undefined.

/** Checks an `IP` or `IP/prefix` (Address, AllowedIPs entries). */
function checkCidr(s: string): string | undefined {
  const slash = s.indexOf('/');
  const ip = slash < 0 ? s : s.slice(0, slash);
  const family = isIP(ip);
  if (family === 0 || ip.includes('%')) return `"${s}" is not an IP address or CIDR`;
  if (slash >= 0) {
    const prefix = s.slice(slash + 1);
    const max = family === 4 ? 32 : 128;
    if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > max) return `"${s}" has an invalid prefix length (0-${max})`;
  }
  return undefined;
}

/** Checks an Endpoint: `host:port`, `IPv4:port` or `[IPv6]:port`. */
function checkEndpoint(s: string): string | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(s);
  if (!m) return `endpoint "${s}" is not host:port or [IPv6]:port`;
  if (m[1] !== undefined && isIP(m[1]) !== 6) return `endpoint "${s}" has an invalid IPv6 address`;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return `endpoint "${s}" has an invalid port (1-65535)`;
  return undefined;
}

/** Checks an integer in [min, max]. */
function checkInt(n: number, min: number, max: number): string | undefined {
  return Number.isInteger(n) && n >= min && n <= max ? undefined : `${n} is not an integer in ${min}-${max}`;
}

/** Checks that a value can sit on one config line unchanged (no line break, no comment sign). */
function checkLineSafe(s: string): string | undefined {
  if (/[\r\n#]/.test(s)) return 'contains a line break or "#"';
  if (s !== s.trim()) return 'has leading or trailing whitespace';
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Rendering

/** Options of the renderers. */
export interface RenderOptions {
  /** Comment lines to start the file with (default: the managed-file header). */
  header?: readonly string[];
  /** Written as the PrivateKey when the config has none (a template for someone else to fill in). */
  privateKeyPlaceholder?: string;
}

/** Problems of the [Interface] section and the header options (empty when it renders faithfully). */
function interfaceProblems(iface: WgQuickInterface, opts: RenderOptions): string[] {
  const problems: string[] = [];
  const add = (where: string, p: string | undefined): void => {
    if (p !== undefined) problems.push(`${where}: ${p}`);
  };
  for (const h of opts.header ?? []) add('header', /^#[^\r\n]*$/.test(h) ? undefined : 'not a one-line comment');
  if (opts.privateKeyPlaceholder !== undefined)
    add('[Interface] PrivateKey placeholder', checkLineSafe(opts.privateKeyPlaceholder));
  if (iface.privateKey !== undefined && !isValidKey(iface.privateKey))
    problems.push('[Interface] PrivateKey: not a valid key');
  for (const a of iface.address) add('[Interface] Address', checkLineSafe(a) ?? checkCidr(a));
  if (iface.listenPort !== undefined) add('[Interface] ListenPort', checkInt(iface.listenPort, 0, 65535));
  if (iface.mtu !== undefined) add('[Interface] MTU', checkInt(iface.mtu, 68, 65535));
  if (iface.table !== undefined)
    add('[Interface] Table', checkLineSafe(iface.table) ?? (iface.table === '' ? 'is empty' : undefined));
  for (const [k, v] of iface.extra) {
    if (!EXTRA_KEYS.has(k.toLowerCase()) || !/^[A-Za-z]+$/.test(k))
      problems.push(`[Interface] ${k}: not a key allowed in extra`);
    add(`[Interface] ${k}`, checkLineSafe(v));
  }
  return problems;
}

/** Problems of one [Peer] section, each prefixed with `where` (empty when it renders faithfully). */
function peerProblems(p: WgQuickPeer, where: string): string[] {
  const problems: string[] = [];
  const add = (what: string, problem: string | undefined): void => {
    if (problem !== undefined) problems.push(`${where} ${what}: ${problem}`);
  };
  if (!isValidKey(p.publicKey)) problems.push(`${where} PublicKey: "${p.publicKey}" is not a valid key`);
  if (p.presharedKey !== undefined && !isValidKey(p.presharedKey))
    problems.push(`${where} PresharedKey: not a valid key`);
  if (p.name !== undefined) {
    add(
      'name',
      /[\r\n]/.test(p.name)
        ? 'contains a line break'
        : p.name !== p.name.trim() || p.name === ''
          ? 'is empty or has surrounding whitespace'
          : undefined,
    );
  }
  if (p.endpoint !== undefined) add('Endpoint', checkLineSafe(p.endpoint) ?? checkEndpoint(p.endpoint));
  for (const a of p.allowedIPs) add('AllowedIPs', checkLineSafe(a) ?? checkCidr(a));
  if (p.persistentKeepalive !== undefined) add('PersistentKeepalive', checkInt(p.persistentKeepalive, 0, 65535));
  return problems;
}

/** One valid [Peer] section as text (the same in both forms). */
function peerSection(p: WgQuickPeer): string {
  const lines = ['', '[Peer]'];
  if (p.name !== undefined) lines.push(`# ${p.name}`);
  lines.push(`PublicKey = ${p.publicKey}`);
  if (p.presharedKey !== undefined) lines.push(`PresharedKey = ${p.presharedKey}`);
  if (p.allowedIPs.length > 0) lines.push(`AllowedIPs = ${p.allowedIPs.join(', ')}`);
  if (p.endpoint !== undefined) lines.push(`Endpoint = ${p.endpoint}`);
  if (p.persistentKeepalive !== undefined) lines.push(`PersistentKeepalive = ${p.persistentKeepalive}`);
  return lines.join('\n');
}

// Checked and rendered [Peer] sections by peer object: a large mesh rewrites its file after a
// change with one new section, not thousands (callers never change a peer object once built).
const sections = new WeakMap<WgQuickPeer, string>();

/** The rendered [Peer] sections in render order; throws with every problem when one cannot be rendered faithfully. */
function peerSections(peers: readonly WgQuickPeer[], problems: string[]): string[] {
  peers.forEach((p, i) => {
    if (sections.has(p)) return;
    const found = peerProblems(p, `[Peer] #${i + 1}`);
    if (found.length > 0) problems.push(...found);
    else sections.set(p, peerSection(p));
  });
  if (problems.length > 0) throw new Error(`rendering wg-quick config: ${problems.join('; ')}`);
  return sortPeers(peers).map((p) => sections.get(p)!);
}

/** Renders the section lines; `forWg` drops what only wg-quick understands (the `wg setconf` form). */
function renderLines(cfg: WgQuickConfig, forWg: boolean, opts: RenderOptions): string[] {
  const { iface } = cfg;
  const peers = peerSections(cfg.peers, interfaceProblems(iface, opts));
  const lines = [...(opts.header ?? [MANAGED_HEADER, MANAGED_NOTICE]), '', '[Interface]'];
  if (!forWg && iface.address.length > 0) lines.push(`Address = ${iface.address.join(', ')}`);
  if (iface.listenPort !== undefined) lines.push(`ListenPort = ${iface.listenPort}`);
  const privateKey = iface.privateKey ?? opts.privateKeyPlaceholder;
  if (privateKey !== undefined) lines.push(`PrivateKey = ${privateKey}`);
  if (!forWg && iface.mtu !== undefined) lines.push(`MTU = ${iface.mtu}`);
  if (!forWg && iface.table !== undefined) lines.push(`Table = ${iface.table}`);
  for (const [k, v] of iface.extra) {
    if (!forWg || !WG_QUICK_ONLY_KEYS.has(k.toLowerCase())) lines.push(`${k} = ${v}`);
  }
  for (const text of peers) lines.push(text);
  return lines;
}

/**
 * Renders a wg-quick file deterministically: the header (by default the managed header),
 * [Interface] keys in a fixed order (Address, ListenPort, PrivateKey, MTU, Table, then extra),
 * peers sorted by name then public key; throws on values that are invalid or would break the
 * line format.
 */
export function renderWgQuick(cfg: WgQuickConfig, opts: RenderOptions = {}): string {
  return `${renderLines(cfg, false, opts).join('\n')}\n`;
}

/**
 * Renders the `wg setconf` form, like `wg-quick strip` applied to {@link renderWgQuick}'s output
 * (the same text minus Address, MTU, Table, DNS, Pre/PostUp/Down and SaveConfig lines).
 */
export function stripWgQuick(cfg: WgQuickConfig, opts: RenderOptions = {}): string {
  return `${renderLines(cfg, true, opts).join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------
// Parsing

/** Whether `text` was rendered by wg-overlay: its first non-empty line is {@link MANAGED_HEADER}. */
export function isManaged(text: string): boolean {
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (t !== '') return t === MANAGED_HEADER;
  }
  return false;
}

/** One `Key = Value` line being parsed, with typed readers that fail naming the line. */
class KeyLine {
  constructor(
    readonly key: string,
    readonly value: string,
    readonly fail: (msg: string) => never,
  ) {}

  /** A comma list of addresses or CIDRs. */
  list(): string[] {
    const items = this.value
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    for (const it of items) {
      const p = checkCidr(it);
      if (p) this.fail(`${this.key}: ${p}`);
    }
    return items;
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    const n = /^\d+$/.test(this.value) ? Number(this.value) : NaN;
    if (checkInt(n, min, max) !== undefined)
      this.fail(`${this.key}: "${this.value}" is not an integer in ${min}-${max}`);
    return n;
  }

  /** A WireGuard key; a secret one is never quoted in the error. */
  wgKey(secret: boolean): string {
    if (!isValidKey(this.value))
      this.fail(
        `${this.key}: ${secret ? 'the value' : `"${this.value}"`} is not a valid key (44 base64 characters encoding 32 bytes)`,
      );
    return this.value;
  }
}

type InterfaceDraft = Omit<WgQuickInterface, 'privateKey'> & { privateKey?: string };
type PeerDraft = Omit<WgQuickPeer, 'publicKey'> & { publicKey?: string };

/** [Interface] keys (lower case) and how each is stored; other keys go to `extra` if allowed. */
const INTERFACE_KEYS: Record<string, (t: InterfaceDraft, l: KeyLine) => void> = {
  privatekey: (t, l) => {
    t.privateKey = l.wgKey(true);
  },
  address: (t, l) => {
    t.address.push(...l.list());
  },
  listenport: (t, l) => {
    t.listenPort = l.int(0, 65535);
  },
  mtu: (t, l) => {
    t.mtu = l.int(68, 65535);
  },
  table: (t, l) => {
    if (l.value === '') l.fail('Table: empty value');
    t.table = l.value;
  },
};

/** [Peer] keys (lower case) and how each is stored. */
const PEER_KEYS: Record<string, (t: PeerDraft, l: KeyLine) => void> = {
  publickey: (t, l) => {
    t.publicKey = l.wgKey(false);
  },
  presharedkey: (t, l) => {
    t.presharedKey = l.wgKey(true);
  },
  allowedips: (t, l) => {
    t.allowedIPs.push(...l.list());
  },
  endpoint: (t, l) => {
    const p = checkEndpoint(l.value);
    if (p) l.fail(`Endpoint: ${p}`);
    t.endpoint = l.value;
  },
  persistentkeepalive: (t, l) => {
    if (l.value.toLowerCase() === 'off') delete t.persistentKeepalive;
    else t.persistentKeepalive = l.int(0, 65535);
  },
};

/** The state of a parse: the sections read so far. */
class WgQuickParser {
  private iface: InterfaceDraft | undefined;
  private ifaceLine = 0;
  private readonly peers: Array<{ peer: PeerDraft; line: number }> = [];
  private section: 'none' | 'interface' | 'peer' = 'none';
  private afterPeerHeader = false;

  constructor(private readonly source: string) {}

  /** Reads one line (1-based `lineNo`). */
  line(rawLine: string, lineNo: number): void {
    const fail = (msg: string): never => {
      throw new Error(`${this.source} line ${lineNo}: ${msg}`);
    };
    const line = rawLine.replace(/\r$/, '');
    const justAfterPeer = this.afterPeerHeader;
    this.afterPeerHeader = false;
    const hash = line.indexOf('#');
    const content = (hash < 0 ? line : line.slice(0, hash)).trim();
    if (content === '') {
      // A comment right after [Peer] names the peer.
      const name = hash >= 0 && justAfterPeer ? line.slice(hash + 1).trim() : '';
      const last = this.peers[this.peers.length - 1];
      if (name !== '' && last) last.peer.name = name;
      return;
    }
    if (content.startsWith('[')) {
      this.header(content, lineNo, fail);
      return;
    }
    const eq = content.indexOf('=');
    if (eq < 0) fail('expected "Key = Value", a [section] or a comment');
    const kl = new KeyLine(content.slice(0, eq).trim(), content.slice(eq + 1).trim(), fail);
    this.keyValue(kl);
  }

  /** The parsed config; throws when a required key or section is missing. */
  result(): WgQuickConfig {
    const { iface, source } = this;
    if (!iface) throw new Error(`${source}: no [Interface] section`);
    if (iface.privateKey === undefined)
      throw new Error(`${source} line ${this.ifaceLine}: [Interface] has no PrivateKey`);
    const result: WgQuickConfig = { iface: { ...iface, privateKey: iface.privateKey }, peers: [] };
    // Key order of the result objects does not matter to deepStrictEqual; undefined members are never set.
    for (const { peer, line } of this.peers) {
      if (peer.publicKey === undefined) throw new Error(`${source} line ${line}: [Peer] has no PublicKey`);
      result.peers.push({ ...peer, publicKey: peer.publicKey });
    }
    return result;
  }

  private header(content: string, lineNo: number, fail: (msg: string) => never): void {
    const kind = /^\[\s*(\w+)\s*\]$/.exec(content)?.[1]?.toLowerCase();
    if (kind === 'interface') {
      this.section = 'interface';
      if (!this.iface) {
        this.iface = { address: [], extra: [] };
        this.ifaceLine = lineNo;
      }
    } else if (kind === 'peer') {
      this.section = 'peer';
      this.peers.push({ peer: { allowedIPs: [] }, line: lineNo });
      this.afterPeerHeader = true;
    } else {
      fail(`unknown section ${content} (expected [Interface] or [Peer])`);
    }
  }

  private keyValue(l: KeyLine): void {
    const lkey = l.key.toLowerCase();
    if (this.section === 'none') l.fail(`"${l.key}" outside of any section (expected [Interface] or [Peer] first)`);
    if (this.section === 'interface') {
      const set = INTERFACE_KEYS[lkey];
      if (set) set(this.iface!, l);
      else if (EXTRA_KEYS.has(lkey)) this.iface!.extra.push([l.key, l.value]);
      else l.fail(`unknown [Interface] key "${l.key}"`);
      return;
    }
    const set = PEER_KEYS[lkey];
    if (!set) l.fail(`unknown [Peer] key "${l.key}"`);
    set!(this.peers[this.peers.length - 1]!.peer, l);
  }
}

/**
 * Parses a wg-quick file (also the output of `wg showconf` and `wg-quick strip`): keys are
 * case-insensitive, `#` starts a comment, Address/AllowedIPs may repeat and hold comma lists,
 * single-valued keys that repeat take the last value (as wg-quick does), and a comment line
 * right after [Peer] is the peer's name; errors name `source` and the line number.
 */
export function parseWgQuick(text: string, source = 'wg-quick config'): WgQuickConfig {
  const parser = new WgQuickParser(source);
  text.split('\n').forEach((line, idx) => parser.line(line, idx + 1));
  return parser.result();
}

// ---------------------------------------------------------------------------------------------
// Writing

/**
 * Writes `cfg` to `path` (mode 0600, atomically, parent created with mode 0700) unless the file
 * already holds the same text; refuses to replace a file that wg-overlay did not write.
 */
export async function writeWgQuickFile(path: string, cfg: WgQuickConfig): Promise<{ changed: boolean }> {
  if (cfg.iface.privateKey === undefined) throw new Error(`writing ${path}: the config has no private key`);
  const text = renderWgQuick(cfg);
  let existing: string | undefined;
  try {
    existing = await readFile(path, 'utf8');
  } catch (cause) {
    if (!hasErrorCode(cause, 'ENOENT')) throw new Error(`reading ${path} before replacing it`, { cause });
  }
  if (existing !== undefined && !isManaged(existing)) {
    throw new Error(
      `refusing to overwrite ${path}: it was not written by wg-overlay (its first line is not "${MANAGED_HEADER}"); ` +
        `move it away (e.g. to ${path}.bak, after bringing that interface down) so wg-overlay can manage it`,
    );
  }
  if (existing === text) {
    try {
      await chmod(path, 0o600);
    } catch (cause) {
      throw new Error(`setting mode 0600 on ${path}`, { cause });
    }
    return { changed: false };
  }
  try {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  } catch (cause) {
    throw new Error(`creating directory ${dirname(path)}`, { cause });
  }
  await writeFileAtomic(path, text, 0o600);
  return { changed: true };
}
