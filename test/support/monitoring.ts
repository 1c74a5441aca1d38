/**
 * The shipped dashboard and alert rules, the metrics table of docs/metrics.md, and Prometheus'
 * text format, read for the tests that check them against each other and against what a daemon
 * serves.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { REPO_ROOT } from './paths.js';

/** The shipped files, in the repository. */
export const DASHBOARD_FILE = join(REPO_ROOT, 'packaging/monitoring/wg-overlay-dashboard.json');
export const ALERTS_FILE = join(REPO_ROOT, 'packaging/monitoring/wg-overlay-alerts.yaml');
export const METRICS_DOC = join(REPO_ROOT, 'docs/metrics.md');

/** One dashboard panel, as far as the tests look. */
export interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { type: string; uid: string };
  targets?: Array<{ expr: string; refId: string; datasource?: { uid: string } }>;
}

/** The dashboard, parsed. */
export function readDashboard(): {
  title: string;
  uid: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: Array<{ name: string; type: string; query?: unknown }> };
} {
  return JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')) as ReturnType<typeof readDashboard>;
}

/** One alerting rule. */
export interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** The alert rules, parsed. */
export function readAlerts(): { groups: Array<{ name: string; rules: AlertRule[] }> } {
  return parseYaml(readFileSync(ALERTS_FILE, 'utf8')) as ReturnType<typeof readAlerts>;
}

/** The metric names a PromQL expression names (a histogram's `_bucket`, `_sum`, `_count` by its family's name). */
export function metricsIn(expr: string): string[] {
  const names = expr.match(/\bwg_overlay_[a-z0-9_]+/g) ?? [];
  return [...new Set(names.map((n) => n.replace(/_(bucket|sum|count)$/, '')))];
}

/** Every expression of the dashboard and the alerts, with where it is. */
export function monitoringExpressions(): Array<{ where: string; expr: string }> {
  const out: Array<{ where: string; expr: string }> = [];
  for (const p of readDashboard().panels)
    for (const t of p.targets ?? []) out.push({ where: `dashboard panel "${p.title}" ${t.refId}`, expr: t.expr });
  for (const g of readAlerts().groups) for (const r of g.rules) out.push({ where: `alert ${r.alert}`, expr: r.expr });
  return out;
}

/** Every metric the dashboard and the alerts use, with the places that use it. */
export function metricsUsed(): Map<string, string[]> {
  const used = new Map<string, string[]>();
  for (const { where, expr } of monitoringExpressions())
    for (const name of metricsIn(expr)) used.set(name, [...(used.get(name) ?? []), where]);
  return used;
}

/** One metric family: its type and the label names its samples carry. */
export interface Family {
  type: string;
  labels: string[];
}

/** The metric families of a text exposition (`le` of histogram buckets is not a label here). */
export function parseExposition(text: string): Map<string, Family> {
  const out = new Map<string, Family>();
  const labels = new Map<string, Set<string>>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) {
      out.set(type[1]!, { type: type[2]!, labels: [] });
      labels.set(type[1]!, new Set());
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? /.exec(line);
    if (!sample) continue;
    const family = [...out.keys()].find((f) => sample[1] === f || sample[1]!.replace(/_(bucket|sum|count)$/, '') === f);
    if (!family) continue;
    for (const pair of (sample[2] ?? '').match(/([a-zA-Z_][a-zA-Z0-9_]*)="/g) ?? []) {
      const name = pair.slice(0, -2);
      if (name !== 'le') labels.get(family)!.add(name);
    }
  }
  for (const [name, f] of out) f.labels = [...labels.get(name)!].sort();
  return out;
}

/** The metrics table of docs/metrics.md: name → type and labels (sorted). */
export function documentedMetrics(): Map<string, Family> {
  const out = new Map<string, Family>();
  for (const line of readFileSync(METRICS_DOC, 'utf8').split('\n')) {
    const row = /^\| `(wg_overlay_[a-z0-9_]+)` \| (\w+) \| ([^|]*) \| .+ \|$/.exec(line);
    if (!row) continue;
    const labels = row[3]!.trim() === '—' ? [] : row[3]!.split(',').map((l) => l.trim().replace(/`/g, ''));
    out.set(row[1]!, { type: row[2]!, labels: labels.sort() });
  }
  return out;
}

/** One sample of a text exposition. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Every sample of a text exposition. */
export function parseSamples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[k!] = v!;
    out.push({ name: m[1]!, labels, value: Number(m[3]!.replace(/^\+Inf$/, 'Infinity')) });
  }
  return out;
}

/** The value of the sample named `name` whose labels include `labels`; undefined when there is none. */
export function sampleValue(
  samples: readonly Sample[],
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}
