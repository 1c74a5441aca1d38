/**
 * The fail-closed rule set as nftables text: the daemon's own table (`inet wg_overlay`), its sets
 * and the one chain both hooks jump to, rendered from the desired rule set, and what `nft -j list
 * table` shows of it read back into the same sets.
 */
import type { BlockedRange, BlockReason, DesiredFirewall, FirewallDelta } from '../mesh/desired/firewall.js';
import { parseCidr, parseHostPort, parseIp } from '../net/ip.js';

/** The daemon's own table: it never touches another. */
export const FIREWALL_TABLE = 'inet wg_overlay';

/** The name of the set (and of the counter) of blocked ranges of one reason and family. */
export function blockedSet(reason: BlockReason, family: 4 | 6): string {
  return `${reason === 'pod-network' ? 'pods' : reason}${family}`;
}

/** Every set of the table with its nft declaration. */
const SETS: ReadonlyArray<{ name: string; decl: string }> = [4, 6].flatMap((f) => {
  const addr = f === 4 ? 'ipv4_addr' : 'ipv6_addr';
  return [
    ...(['carried', 'kept', 'pod-network'] as const).map((r) => ({
      name: blockedSet(r, f as 4 | 6),
      decl: `type ${addr}; flags interval; counter;`,
    })),
    { name: `exempt${f}`, decl: `type ${addr}; flags interval;` },
    { name: `hops${f}`, decl: `type ${addr};` },
    { name: `endpoints${f}`, decl: `type ${addr} . inet_service;` },
  ];
});

/** The names of the table's sets, in the order they are declared. */
export const SET_NAMES: readonly string[] = SETS.map((s) => s.name);

/** The sets' elements as nft writes them (`10.244.2.0/24 comment "n2"`), by set name. */
export type SetElements = Map<string, Set<string>>;

/** A comment nft accepts: a name of letters, digits and `.-_:`, at most 64 characters. */
function comment(text: string): string {
  const safe = text.replace(/[^A-Za-z0-9._:-]/g, '_').slice(0, 64);
  return safe ? ` comment "${safe}"` : '';
}

/** The family of an address or CIDR text. */
function familyOf(text: string): 4 | 6 {
  return text.includes(':') ? 6 : 4;
}

/** A blocked range's set and element. */
function blockedElement(b: BlockedRange): [string, string] {
  return [blockedSet(b.reason, familyOf(b.dst)), `${b.dst}${comment(b.owner)}`];
}

/** An endpoint's set and element (undefined: not `address:port`). */
function endpointElement(e: string): [string, string] | undefined {
  const hp = parseHostPort(e);
  return hp && parseIp(hp.host) ? [`endpoints${familyOf(hp.host)}`, `${hp.host} . ${hp.port}`] : undefined;
}

/** The elements of the small lists (exemptions and next hops) of a rule set. */
function smallLists(fw: Pick<DesiredFirewall, 'exempt' | 'hops'>): Array<[string, string]> {
  return [
    ...fw.exempt.map((e): [string, string] => [`exempt${familyOf(e.dst)}`, `${e.dst}${comment(e.kind)}`]),
    ...fw.hops.map((h): [string, string] => [`hops${familyOf(h)}`, h]),
  ];
}

/** The elements of every set for a desired rule set. */
export function elementsOf(fw: DesiredFirewall): SetElements {
  const sets: SetElements = new Map(SET_NAMES.map((n) => [n, new Set<string>()]));
  const add = (el: [string, string] | undefined): void => void (el && sets.get(el[0])!.add(el[1]));
  for (const b of fw.blocked) add(blockedElement(b));
  for (const el of smallLists(fw)) add(el);
  for (const e of fw.endpoints) add(endpointElement(e));
  return sets;
}

/** Per set, the elements to delete and to add. */
export type SetChanges = Map<string, { gone: string[]; come: string[] }>;

/** What turns the sets `from` into `to`, set by set (every element compared). */
export function diffSets(from: SetElements, to: SetElements): SetChanges {
  const out: SetChanges = new Map();
  for (const name of SET_NAMES) {
    const a = from.get(name) ?? new Set<string>();
    const b = to.get(name) ?? new Set<string>();
    const gone = [...a].filter((e) => !b.has(e));
    const come = [...b].filter((e) => !a.has(e));
    if (gone.length + come.length > 0) out.set(name, { gone, come });
  }
  return out;
}

/**
 * The changes of rule set `to`, derived from `from`, to the sets `sets` (which hold `from`'s
 * elements, and are brought to `to`'s in place): only the entries that changed are looked at, and
 * the small lists (exemptions, next hops) when they changed.
 */
export function deltaSets(sets: SetElements, from: DesiredFirewall, to: DesiredFirewall, d: FirewallDelta): SetChanges {
  const edits = new Map<string, { rm: Set<string>; ad: Set<string> }>();
  const edit = (el: [string, string] | undefined, add: boolean): void => {
    if (!el) return;
    let e = edits.get(el[0]);
    if (!e) edits.set(el[0], (e = { rm: new Set(), ad: new Set() }));
    (add ? e.ad : e.rm).add(el[1]);
  };
  for (const b of d.removed) edit(blockedElement(b), false);
  for (const b of d.added) edit(blockedElement(b), true);
  for (const e of d.endpointsRemoved) edit(endpointElement(e), false);
  for (const e of d.endpointsAdded) edit(endpointElement(e), true);
  if (to.exempt !== from.exempt || to.hops !== from.hops) {
    for (const el of smallLists(from)) edit(el, false);
    for (const el of smallLists(to)) edit(el, true);
  }
  const out: SetChanges = new Map();
  for (const [name, { rm, ad }] of edits) {
    const current = sets.get(name)!;
    const gone = [...rm].filter((t) => !ad.has(t) && current.has(t));
    const come = [...ad].filter((t) => !current.has(t));
    for (const t of gone) current.delete(t);
    for (const t of come) current.add(t);
    if (gone.length + come.length > 0) out.set(name, { gone, come });
  }
  return out;
}

/** The rules of the chain both hooks jump to, for interface `iface`. */
export function guardRules(iface: string): string[] {
  const drops = (['carried', 'kept', 'pod-network'] as const).flatMap((r) => [
    `ip daddr @${blockedSet(r, 4)} counter name "${blockedSet(r, 4)}" drop`,
    `ip6 daddr @${blockedSet(r, 6)} counter name "${blockedSet(r, 6)}" drop`,
  ]);
  return [
    `oifname { "lo", "${iface}" } return`,
    'ip daddr @exempt4 return',
    'ip6 daddr @exempt6 return',
    'ip daddr . udp dport @endpoints4 return',
    'ip6 daddr . udp dport @endpoints6 return',
    'rt ip nexthop @hops4 return',
    'rt ip6 nexthop @hops6 return',
    ...drops,
  ];
}

/** `add element` (or `delete element`) commands for `elements` of `set`, in chunks nft reads at once. */
export function elementCommands(verb: 'add' | 'delete', set: string, elements: Iterable<string>): string[] {
  const list = [...elements].map((e) => (verb === 'delete' ? e.replace(/ comment ".*"$/, '') : e));
  const out: string[] = [];
  for (let i = 0; i < list.length; i += 500)
    out.push(`${verb} element ${FIREWALL_TABLE} ${set} { ${list.slice(i, i + 500).join(', ')} }`);
  return out;
}

/**
 * The whole table as one nft script, applied as one transaction: it creates the table if it is
 * missing, deletes it with everything in it, and declares it anew (`nft -f` at boot loads this).
 */
export function renderTable(iface: string, sets: SetElements): string {
  const lines = [
    '# The fail-closed rule set of wg-overlay (written by the daemon, loaded at boot by',
    '# wg-overlay-fail-closed.service): see `wg-overlay status`.',
    `table ${FIREWALL_TABLE}`,
    `delete table ${FIREWALL_TABLE}`,
    `table ${FIREWALL_TABLE} {`,
    ...(['carried', 'kept', 'pod-network'] as const).flatMap((r) =>
      [4, 6].map((f) => `  counter ${blockedSet(r, f as 4 | 6)} {}`),
    ),
    ...SETS.map((s) => `  set ${s.name} { ${s.decl} }`),
    '  chain guard {',
    ...guardRules(iface).map((r) => `    ${r}`),
    '  }',
    '  chain output { type filter hook output priority filter; policy accept; jump guard; }',
    '  chain forward { type filter hook forward priority filter; policy accept; jump guard; }',
    '}',
  ];
  for (const [name, elements] of sets) lines.push(...elementCommands('add', name, elements));
  return `${lines.join('\n')}\n`;
}

/** What the table on the host holds, as read back from `nft -j list table`. */
export interface ReadTable {
  /** The elements of each set, written as `renderTable` writes them. */
  sets: SetElements;
  /** The interface the guard's first rule lets through (besides `lo`). */
  iface: string | undefined;
  /** True when the sets, the chains and the guard's rules are the ones this version writes for `iface`. */
  layoutMatches: boolean;
}

type Json = Record<string, unknown>;

/** One element of `nft -j` output as nft writes it in a script (a single address of an interval set as its host CIDR). */
function elementText(e: unknown, interval = false): string | undefined {
  const el = (e as Json)?.elem as Json | undefined;
  const val = el ? el.val : e;
  const note = el && typeof el.comment === 'string' ? ` comment "${el.comment}"` : '';
  if (typeof val === 'string') return interval ? `${val}/${val.includes(':') ? 128 : 32}${note}` : `${val}${note}`;
  const prefix = (val as Json)?.prefix as { addr?: string; len?: number } | undefined;
  if (prefix?.addr !== undefined) {
    const c = parseCidr(`${prefix.addr}/${prefix.len}`);
    return c ? `${prefix.addr}/${prefix.len}${note}` : undefined;
  }
  const concat = (val as Json)?.concat as unknown[] | undefined;
  if (Array.isArray(concat) && concat.length === 2) return `${String(concat[0])} . ${String(concat[1])}`;
  return undefined;
}

/** The interface of the guard's first rule (`oifname { "lo", IFACE } return`). */
function ifaceOf(rule: Json): string | undefined {
  const right = ((rule.expr as Json[] | undefined)?.[0]?.match as Json | undefined)?.right as Json | undefined;
  const names = right?.set as unknown[] | undefined;
  return Array.isArray(names) && names[0] === 'lo' && typeof names[1] === 'string' ? names[1] : undefined;
}

/** Reads `nft -j list table inet wg_overlay` output. */
export function parseTable(json: string): ReadTable {
  const items = ((JSON.parse(json) as Json).nftables as Json[] | undefined) ?? [];
  const sets: SetElements = new Map();
  let rules = 0;
  let chains = 0;
  let iface: string | undefined;
  for (const item of items) {
    const set = item.set as Json | undefined;
    if (set && typeof set.name === 'string') {
      const elements = new Set<string>();
      const interval = Array.isArray(set.flags) && set.flags.includes('interval');
      for (const e of (set.elem as unknown[] | undefined) ?? []) {
        const t = elementText(e, interval);
        if (t) elements.add(t);
      }
      sets.set(set.name, elements);
    }
    if (item.chain) chains++;
    const rule = item.rule as Json | undefined;
    if (rule?.chain === 'guard') {
      if (rules === 0) iface = ifaceOf(rule);
      rules++;
    }
  }
  const layoutMatches =
    chains === 3 && iface !== undefined && rules === guardRules(iface).length && SET_NAMES.every((n) => sets.has(n));
  return { sets, iface, layoutMatches };
}

/** The named counters of `nft -j list counters table inet wg_overlay`: packets by counter name. */
export function parseCounters(json: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const item of ((JSON.parse(json) as Json).nftables as Json[] | undefined) ?? []) {
    const c = item.counter as { name?: string; packets?: number } | undefined;
    if (c?.name !== undefined && typeof c.packets === 'number') out.set(c.name, c.packets);
  }
  return out;
}

/** The elements of one set of `nft -j list set` output with their packet counts. */
export function parseElementCounters(json: string): Array<{ element: string; packets: number }> {
  const out: Array<{ element: string; packets: number }> = [];
  for (const item of ((JSON.parse(json) as Json).nftables as Json[] | undefined) ?? []) {
    for (const e of ((item.set as Json | undefined)?.elem as unknown[] | undefined) ?? []) {
      const t = elementText(e, true)?.replace(/ comment ".*"$/, '');
      const packets = (((e as Json).elem as Json | undefined)?.counter as { packets?: number } | undefined)?.packets;
      if (t && typeof packets === 'number') out.push({ element: t, packets });
    }
  }
  return out;
}
