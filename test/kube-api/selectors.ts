/*
 * Label and field selectors as the kube-apiserver parses them from `labelSelector=` and
 * `fieldSelector=` query parameters: `=`, `==`, `!=`, `in (..)`, `notin (..)`, `key`, `!key`,
 * `>`/`<` for labels; `=`, `==`, `!=` on a fixed set of fields for fields.
 * Parse errors are ApiErrors with code 400 like the real server's.
 */
import { badRequest } from './status.js';
import { getPath } from './json.js';

/** One parsed label requirement. */
export interface LabelRequirement {
  key: string;
  op: 'exists' | 'notexists' | '=' | '!=' | 'in' | 'notin' | 'gt' | 'lt';
  values: string[];
}

const KEY = '[A-Za-z0-9](?:[-A-Za-z0-9_./]*[A-Za-z0-9])?';
const VALUE = '(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?';

function splitTopLevel(s: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  parts.push(cur);
  return parts.map((p) => p.trim());
}

/** Parses a label selector string; an empty string selects everything. */
export function parseLabelSelector(selector: string): LabelRequirement[] {
  if (selector.trim() === '') return [];
  const reqs: LabelRequirement[] = [];
  for (const part of splitTopLevel(selector)) {
    let m: RegExpMatchArray | null;
    const fail = () =>
      badRequest(`unable to parse requirement: found '${part}', expected: key, !key, key=value, key in (...)`);
    if ((m = part.match(new RegExp(`^!\\s*(${KEY})$`))))
      reqs.push({ key: m[1] as string, op: 'notexists', values: [] });
    else if ((m = part.match(new RegExp(`^(${KEY})\\s+(in|notin)\\s*\\((.*)\\)$`)))) {
      const values = (m[3] as string).split(',').map((v) => v.trim());
      if (values.some((v) => !new RegExp(`^${VALUE}$`).test(v))) throw fail();
      reqs.push({ key: m[1] as string, op: m[2] === 'in' ? 'in' : 'notin', values });
    } else if ((m = part.match(new RegExp(`^(${KEY})\\s*(==|=|!=|>|<)\\s*(${VALUE})$`)))) {
      const op = m[2] === '!=' ? '!=' : m[2] === '>' ? 'gt' : m[2] === '<' ? 'lt' : '=';
      if ((op === 'gt' || op === 'lt') && !/^-?[0-9]+$/.test(m[3] as string)) throw fail();
      reqs.push({ key: m[1] as string, op, values: [m[3] as string] });
    } else if ((m = part.match(new RegExp(`^(${KEY})$`)))) reqs.push({ key: m[1] as string, op: 'exists', values: [] });
    else throw fail();
  }
  return reqs;
}

/** True when `labels` satisfy every requirement (`!=` and `notin` also match an absent label). */
export function matchLabels(reqs: LabelRequirement[], labels: Record<string, string> | undefined): boolean {
  const l = labels ?? {};
  return reqs.every((r) => {
    const has = Object.prototype.hasOwnProperty.call(l, r.key);
    const v = l[r.key];
    switch (r.op) {
      case 'exists':
        return has;
      case 'notexists':
        return !has;
      case '=':
        return has && v === r.values[0];
      case '!=':
        return !has || v !== r.values[0];
      case 'in':
        return has && r.values.includes(v as string);
      case 'notin':
        return !has || !r.values.includes(v as string);
      case 'gt':
      case 'lt': {
        if (!has || !/^-?[0-9]+$/.test(v as string)) return false;
        const n = Number(v);
        const bound = Number(r.values[0]);
        return r.op === 'gt' ? n > bound : n < bound;
      }
    }
  });
}

/** One parsed field requirement. */
export interface FieldRequirement {
  field: string;
  op: '=' | '!=';
  value: string;
}

/** Parses a field selector, allowing only `supported` field paths (400 `field label not supported` otherwise). */
export function parseFieldSelector(selector: string, supported: readonly string[]): FieldRequirement[] {
  if (selector.trim() === '') return [];
  return selector.split(',').map((part) => {
    const m = part.trim().match(/^([A-Za-z0-9_.\-/]+)\s*(==|=|!=)\s*(.*)$/);
    if (!m) throw badRequest(`invalid selector: '${selector}'; can't understand '${part}'`);
    const field = m[1] as string;
    if (!supported.includes(field)) throw badRequest(`field label not supported: ${field}`);
    return { field, op: m[2] === '!=' ? '!=' : '=', value: (m[3] as string).trim() };
  });
}

/** The string form of a selectable field of an object, as the apiserver computes it. */
export function fieldValue(obj: unknown, field: string): string {
  const v = getPath(obj, field);
  if (v === undefined || v === null) return field === 'spec.unschedulable' ? 'false' : '';
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/** True when the object satisfies every field requirement. */
export function matchFields(reqs: FieldRequirement[], obj: unknown): boolean {
  return reqs.every((r) => (fieldValue(obj, r.field) === r.value) === (r.op === '='));
}
