/*
 * ValidatingAdmissionPolicies (admissionregistration.k8s.io/v1) for the test API server,
 * evaluated with a real CEL implementation (@bufbuild/cel): which policies and bindings match a
 * request (resource rules, object selector), their matchConditions, variables and validations over
 * `object`, `oldObject` and `request`, the binding's validation actions, and the Status of a
 * denial worded like kube-apiserver's. Only standard CEL is available: an expression using one of
 * the Kubernetes CEL libraries (quantity, url, authorizer, ...) fails like an undeclared function.
 */
import { randomUUID } from 'node:crypto';
import { celEnv, isCelError, parse, plan, type CelInput, type CelResult } from '@bufbuild/cel';
import type { UserInfo } from './auth.js';
import { isObject, type JsonObject } from './json.js';
import type { KubeObject, ResourceDefinition } from './registry.js';
import { matchLabels, type LabelRequirement } from './selectors.js';
import { ApiError } from './status.js';

const GROUP = 'admissionregistration.k8s.io';

/** An admission operation, as `request.operation` names it (a PATCH is an UPDATE). */
export type Operation = 'CREATE' | 'UPDATE' | 'DELETE' | 'CONNECT';

/** What admission knows of one write request. */
export interface AdmissionRequest {
  operation: Operation;
  group: string;
  version: string;
  /** The resource's plural name, e.g. `nodes`. */
  resource: string;
  subResource?: string;
  kind: string;
  name: string;
  namespace?: string;
  /** The object after the write (null for DELETE). */
  object: KubeObject | null;
  /** The object before the write (null for CREATE). */
  oldObject: KubeObject | null;
  userInfo: UserInfo;
  dryRun?: boolean;
}

/** The outcome of one validation (or match condition) of one policy through one binding. */
export interface PolicyDecision {
  policy: string;
  binding: string;
  action: 'admit' | 'deny';
  /** Why it denied (the validation's message, or the evaluation error). */
  message?: string;
  /** The Status reason a denial carries (the validation's `reason`, default Invalid). */
  reason?: string;
  /** The expression could not be evaluated (failurePolicy decided the action). */
  error?: boolean;
}

/** What admission decided about a request. */
export interface AdmissionResult {
  /** Every decision of every matching policy and binding, in evaluation order. */
  decisions: PolicyDecision[];
  /** Set when a binding with the Deny action denied the request: the error to answer with. */
  denial?: ApiError;
  /** Texts for `Warning` headers (bindings with the Warn action). */
  warnings: string[];
}

// ---- CEL ----------------------------------------------------------------------------------

const env = celEnv();
type Program = (ctx: Record<string, CelInput>) => CelResult;
const programs = new Map<string, Program | Error>();

/** The compiled form of an expression, or the Error that compiling it raised (cached by text). */
function compile(expr: string): Program | Error {
  let p = programs.get(expr);
  if (!p) {
    try {
      p = plan(env, parse(expr)) as Program;
    } catch (err) {
      p = err instanceof Error ? err : new Error(String(err));
    }
    programs.set(expr, p);
  }
  return p;
}

/** Checks that `expr` compiles; returns the compiler's message when it does not. */
export function compileError(expr: string): string | undefined {
  const p = compile(expr);
  return p instanceof Error ? p.message.split('\n')[0] : undefined;
}

/** A JSON value as CEL sees it: objects are maps, integers are `int`, other numbers `double`. */
export function toCel(v: unknown): CelInput {
  if (v === null || v === undefined) return null;
  if (Array.isArray(v)) return v.map(toCel);
  if (typeof v === 'object')
    return new Map(
      Object.entries(v as JsonObject)
        .filter(([, x]) => x !== undefined)
        .map(([k, x]) => [k, toCel(x)]),
    );
  if (typeof v === 'number') return Number.isInteger(v) ? BigInt(v) : v;
  return v as CelInput;
}

type Evaluated = { ok: true; value: unknown } | { ok: false; error: string };

function evaluate(expr: string, ctx: Record<string, CelInput>): Evaluated {
  const p = compile(expr);
  if (p instanceof Error) return { ok: false, error: `compilation failed: ${p.message.split('\n')[0]}` };
  let r: CelResult;
  try {
    r = p(ctx);
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  }
  return isCelError(r) ? { ok: false, error: r.message } : { ok: true, value: r };
}

// ---- matching -----------------------------------------------------------------------------

interface RuleWithOperations {
  apiGroups?: string[];
  apiVersions?: string[];
  resources?: string[];
  operations?: string[];
  resourceNames?: string[];
  scope?: string;
}

interface MatchResources {
  resourceRules?: RuleWithOperations[];
  excludeResourceRules?: RuleWithOperations[];
  namespaceSelector?: JsonObject;
  objectSelector?: JsonObject;
}

const has = (list: string[] | undefined, v: string): boolean => !!list && (list.includes('*') || list.includes(v));

function resourceMatches(patterns: string[] | undefined, resource: string, sub: string | undefined): boolean {
  for (const p of patterns ?? []) {
    if (p === '*/*') return true;
    const [res, psub] = p.split('/') as [string, string | undefined];
    if (psub === undefined) {
      if (!sub && (res === '*' || res === resource)) return true;
    } else if (sub && (res === '*' || res === resource) && (psub === '*' || psub === sub)) {
      return true;
    }
  }
  return false;
}

function ruleMatches(rule: RuleWithOperations, req: AdmissionRequest): boolean {
  if (!has(rule.operations, req.operation) || !has(rule.apiGroups, req.group) || !has(rule.apiVersions, req.version))
    return false;
  if (!resourceMatches(rule.resources, req.resource, req.subResource)) return false;
  if (rule.resourceNames?.length && !rule.resourceNames.includes(req.name)) return false;
  const scope = rule.scope ?? '*';
  if (scope === 'Cluster' && req.namespace) return false;
  if (scope === 'Namespaced' && !req.namespace) return false;
  return true;
}

/** A metav1.LabelSelector as requirements (matchLabels and matchExpressions). */
function selectorRequirements(sel: JsonObject): LabelRequirement[] {
  const reqs: LabelRequirement[] = [];
  for (const [key, value] of Object.entries(isObject(sel.matchLabels) ? sel.matchLabels : {}))
    reqs.push({ key, op: '=', values: [String(value)] });
  for (const e of Array.isArray(sel.matchExpressions) ? (sel.matchExpressions as JsonObject[]) : []) {
    const ops: Record<string, LabelRequirement['op']> = {
      In: 'in',
      NotIn: 'notin',
      Exists: 'exists',
      DoesNotExist: 'notexists',
    };
    const op = ops[String(e.operator)];
    if (!op) throw new ApiError(500, 'InternalError', `objectSelector operator ${String(e.operator)} is not supported`);
    reqs.push({ key: String(e.key), op, values: Array.isArray(e.values) ? e.values.map(String) : [] });
  }
  return reqs;
}

function isEmptySelector(sel: unknown): boolean {
  return (
    sel === undefined ||
    sel === null ||
    (isObject(sel) &&
      Object.keys(sel).every((k) => {
        const v = sel[k];
        return (
          v === undefined ||
          v === null ||
          (Array.isArray(v) ? v.length === 0 : isObject(v) && Object.keys(v).length === 0)
        );
      }))
  );
}

function matches(mr: MatchResources | undefined, req: AdmissionRequest, unsetRulesMatchAll: boolean): boolean {
  if (!mr) return unsetRulesMatchAll;
  const rules = mr.resourceRules ?? [];
  if (rules.length === 0 ? !unsetRulesMatchAll : !rules.some((r) => ruleMatches(r, req))) return false;
  if ((mr.excludeResourceRules ?? []).some((r) => ruleMatches(r, req))) return false;
  if (req.namespace && !isEmptySelector(mr.namespaceSelector)) {
    throw new ApiError(
      500,
      'InternalError',
      'namespaceSelector is not supported by the test API server (it serves no Namespaces)',
    );
  }
  if (!isEmptySelector(mr.objectSelector)) {
    const reqs = selectorRequirements(mr.objectSelector as JsonObject);
    const labels = (o: KubeObject | null) => o?.metadata?.labels;
    // As in Kubernetes: the request matches when the new or the old object does.
    const objs = [req.object, req.oldObject].filter((o): o is KubeObject => o !== null);
    if (!objs.some((o) => matchLabels(reqs, labels(o)))) return false;
  }
  return true;
}

// ---- evaluation ---------------------------------------------------------------------------

/** An object as the API server's typed decoding leaves it: empty metadata maps and lists are omitted (Go's omitempty). */
function asDecoded(o: KubeObject | null): KubeObject | null {
  if (!o || !isObject(o.metadata)) return o;
  const meta: JsonObject = { ...o.metadata };
  for (const k of ['labels', 'annotations', 'finalizers', 'ownerReferences', 'managedFields']) {
    const v = meta[k];
    if (v === null || (Array.isArray(v) && v.length === 0) || (isObject(v) && Object.keys(v).length === 0))
      delete meta[k];
  }
  return { ...o, metadata: meta };
}

/** The `request` variable: an admission.k8s.io/v1 AdmissionRequest without its objects, empty fields omitted. */
function requestValue(req: AdmissionRequest): JsonObject {
  const kind = { group: req.group, version: req.version, kind: req.kind };
  const resource = { group: req.group, version: req.version, resource: req.resource };
  const userInfo: JsonObject = { username: req.userInfo.username };
  if (req.userInfo.uid) userInfo.uid = req.userInfo.uid;
  if (req.userInfo.groups?.length) userInfo.groups = req.userInfo.groups;
  if (req.userInfo.extra && Object.keys(req.userInfo.extra).length) userInfo.extra = req.userInfo.extra;
  const out: JsonObject = {
    uid: randomUUID(),
    kind,
    resource,
    requestKind: kind,
    requestResource: resource,
    operation: req.operation,
    userInfo,
    dryRun: !!req.dryRun,
  };
  if (req.subResource) out.subResource = out.requestSubResource = req.subResource;
  if (req.name) out.name = req.name;
  if (req.namespace) out.namespace = req.namespace;
  return out;
}

interface Named {
  name?: string;
  expression?: string;
}
interface Validation {
  expression?: string;
  message?: string;
  messageExpression?: string;
  reason?: string;
}

const MAX_MESSAGE_BYTES = 5 * 1024;

/** The message of a failed validation: messageExpression (one line, at most 5 KiB), else `message`, else the expression. */
function denialMessage(v: Validation, ctx: Record<string, CelInput>): string {
  if (v.messageExpression) {
    const m = evaluate(v.messageExpression, ctx);
    if (m.ok && typeof m.value === 'string') {
      const s = m.value.trim();
      if (s && Buffer.byteLength(s) <= MAX_MESSAGE_BYTES && !s.includes('\n')) return s;
    }
  }
  if (v.message?.trim()) return v.message.trim();
  return `failed expression: ${(v.expression ?? '').trim()}`;
}

/** Evaluates one policy through one binding; returns its decisions (none when its match conditions exclude the request). */
function evaluatePolicy(policy: KubeObject, binding: KubeObject, req: AdmissionRequest): PolicyDecision[] {
  const spec = (policy.spec ?? {}) as JsonObject;
  const ids = { policy: policy.metadata?.name ?? '', binding: binding.metadata?.name ?? '' };
  if (spec.paramKind)
    throw new ApiError(
      500,
      'InternalError',
      `ValidatingAdmissionPolicy '${ids.policy}': paramKind is not supported by the test API server`,
    );
  const fail = spec.failurePolicy !== 'Ignore';
  const onError = (message: string): PolicyDecision => ({
    ...ids,
    action: fail ? 'deny' : 'admit',
    message,
    error: true,
  });
  const ctx: Record<string, CelInput> = {
    object: toCel(asDecoded(req.object)),
    oldObject: toCel(asDecoded(req.oldObject)),
    request: toCel(requestValue(req)),
    params: null,
    namespaceObject: null,
  };
  for (const mc of (spec.matchConditions ?? []) as Named[]) {
    const r = evaluate(mc.expression ?? '', { ...ctx, variables: new Map() });
    if (!r.ok) return [onError(`failed to evaluate matchCondition '${mc.name ?? ''}': ${r.error}`)];
    if (typeof r.value !== 'boolean') return [onError(`matchCondition '${mc.name ?? ''}' did not evaluate to a bool`)];
    if (!r.value) return [];
  }
  // Variables are evaluated in order, each seeing the ones before it; one that fails is left
  // out, so an expression using it fails in turn (Kubernetes evaluates them lazily, to the same effect).
  const variables = new Map<string, CelInput>();
  ctx.variables = variables;
  for (const v of (spec.variables ?? []) as Named[]) {
    const r = evaluate(v.expression ?? '', ctx);
    if (r.ok) variables.set(v.name ?? '', r.value as CelInput);
  }
  return ((spec.validations ?? []) as Validation[]).map((v): PolicyDecision => {
    const expr = v.expression ?? '';
    const r = evaluate(expr, ctx);
    if (!r.ok) return onError(`expression '${expr}' resulted in error: ${r.error}`);
    if (r.value === true) return { ...ids, action: 'admit' };
    if (typeof r.value !== 'boolean')
      return onError(`expression '${expr}' resulted in error: validation expression must evaluate to a bool`);
    return { ...ids, action: 'deny', reason: v.reason || 'Invalid', message: denialMessage(v, ctx) };
  });
}

/** The HTTP status Kubernetes answers a policy denial with, by its reason. */
function reasonToCode(reason: string): number {
  switch (reason) {
    case 'Forbidden':
      return 403;
    case 'Unauthorized':
      return 401;
    case 'RequestEntityTooLarge':
      return 413;
    default:
      return 422;
  }
}

/**
 * The error kube-apiserver answers a denied request with:
 * `<resource> "<name>" is forbidden: ValidatingAdmissionPolicy '…' with binding '…' denied request: …`.
 */
function denialError(d: PolicyDecision, req: AdmissionRequest): ApiError {
  const message = `ValidatingAdmissionPolicy '${d.policy}' with binding '${d.binding}' denied request: ${d.message ?? ''}`;
  const qualified = req.group ? `${req.resource}.${req.group}` : req.resource;
  const name = req.name || req.object?.metadata?.name || '';
  const reason = d.reason || 'Invalid';
  const details: ConstructorParameters<typeof ApiError>[3] = { name, kind: req.resource, causes: [{ message }] };
  if (req.group) details!.group = req.group;
  return new ApiError(
    reasonToCode(reason),
    reason,
    name ? `${qualified} "${name}" is forbidden: ${message}` : `${qualified} is forbidden: ${message}`,
    details,
  );
}

/**
 * Runs validating admission: every binding (by name) whose policy exists and matches the request
 * evaluates that policy. Denials of bindings with the Deny action refuse the request with the
 * first one's message and reason (default Invalid, 422; Forbidden is 403); Warn adds a warning.
 */
export function validatingAdmission(
  policies: KubeObject[],
  bindings: KubeObject[],
  req: AdmissionRequest,
): AdmissionResult {
  const byName = new Map(policies.map((p) => [p.metadata?.name ?? '', p]));
  const decisions: PolicyDecision[] = [];
  const denied: PolicyDecision[] = [];
  const warnings: string[] = [];
  const sorted = [...bindings].sort((a, b) => (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''));
  for (const binding of sorted) {
    const bspec = (binding.spec ?? {}) as JsonObject;
    const policy = byName.get(String(bspec.policyName ?? ''));
    if (!policy) continue;
    const pspec = (policy.spec ?? {}) as JsonObject;
    if (!matches(pspec.matchConstraints as MatchResources | undefined, req, false)) continue;
    if (!matches(bspec.matchResources as MatchResources | undefined, req, true)) continue;
    const actions = (bspec.validationActions ?? []) as string[];
    for (const d of evaluatePolicy(policy, binding, req)) {
      decisions.push(d);
      if (d.action !== 'deny') continue;
      if (actions.includes('Deny')) denied.push(d);
      if (actions.includes('Warn'))
        warnings.push(
          `Validation failed for ValidatingAdmissionPolicy '${d.policy}' with binding '${d.binding}': ${d.message ?? ''}`,
        );
    }
  }
  const result: AdmissionResult = { decisions, warnings };
  if (denied[0]) result.denial = denialError(denied[0], req);
  return result;
}

// ---- the API types ------------------------------------------------------------------------

function invalidObject(kind: string, name: string, field: string, detail: string): ApiError {
  const message = `${field}: ${detail}`;
  return new ApiError(422, 'Invalid', `${kind}.${GROUP} "${name}" is invalid: ${message}`, {
    name,
    group: GROUP,
    kind,
    causes: [{ reason: 'FieldValueInvalid', message: detail, field }],
  });
}

/** Rejects a policy whose required parts are missing or whose expressions do not compile (422, as on create in Kubernetes). */
export function validatePolicy(obj: KubeObject): void {
  const kind = 'ValidatingAdmissionPolicy';
  const name = obj.metadata?.name ?? '';
  const spec = isObject(obj.spec) ? obj.spec : {};
  if (!isObject(spec.matchConstraints)) throw invalidObject(kind, name, 'spec.matchConstraints', 'Required value');
  const lists: Array<[string, unknown]> = [
    ['matchConditions', spec.matchConditions],
    ['variables', spec.variables],
    ['validations', spec.validations],
  ];
  if (
    !(Array.isArray(spec.validations) && spec.validations.length) &&
    !(Array.isArray(spec.auditAnnotations) && spec.auditAnnotations.length)
  ) {
    throw invalidObject(
      kind,
      name,
      'spec.validations',
      'Required value: validations or auditAnnotations must contain at least one item',
    );
  }
  for (const [list, items] of lists) {
    for (const [i, item] of (Array.isArray(items) ? items : []).entries()) {
      for (const key of ['expression', 'messageExpression']) {
        const expr = isObject(item) ? item[key] : undefined;
        if (key === 'expression' && typeof expr !== 'string')
          throw invalidObject(kind, name, `spec.${list}[${i}].expression`, 'Required value');
        if (typeof expr !== 'string') continue;
        const err = compileError(expr);
        if (err)
          throw invalidObject(
            kind,
            name,
            `spec.${list}[${i}].${key}`,
            `Invalid value: ${JSON.stringify(expr)}: compilation failed: ${err}`,
          );
      }
    }
  }
}

/** Rejects a binding without a policy name or with invalid validation actions (422). */
export function validateBinding(obj: KubeObject): void {
  const kind = 'ValidatingAdmissionPolicyBinding';
  const name = obj.metadata?.name ?? '';
  const spec = isObject(obj.spec) ? obj.spec : {};
  if (typeof spec.policyName !== 'string' || !spec.policyName)
    throw invalidObject(kind, name, 'spec.policyName', 'Required value');
  const actions = spec.validationActions;
  if (!Array.isArray(actions) || actions.length === 0)
    throw invalidObject(
      kind,
      name,
      'spec.validationActions',
      'Required value: at least one validation action is required',
    );
  for (const [i, a] of actions.entries()) {
    if (!['Deny', 'Warn', 'Audit'].includes(a as string))
      throw invalidObject(
        kind,
        name,
        `spec.validationActions[${i}]`,
        `Unsupported value: ${JSON.stringify(a)}: supported values: "Audit", "Deny", "Warn"`,
      );
  }
  if (new Set(actions).size !== actions.length)
    throw invalidObject(kind, name, 'spec.validationActions', 'Duplicate value');
  if (actions.includes('Deny') && actions.includes('Warn'))
    throw invalidObject(
      kind,
      name,
      'spec.validationActions',
      'Invalid value: must not contain both Deny and Warn (repeating the same validation failure information ' +
        'in the API response and headers serves no purpose)',
    );
}

/** admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy (cluster-scoped, status subresource). */
export const VALIDATING_ADMISSION_POLICY_RESOURCE: ResourceDefinition = {
  group: GROUP,
  version: 'v1',
  kind: 'ValidatingAdmissionPolicy',
  plural: 'validatingadmissionpolicies',
  categories: ['api-extensions'],
  namespaced: false,
  statusSubresource: true,
  builtin: true,
  validate: validatePolicy,
};

/** admissionregistration.k8s.io/v1 ValidatingAdmissionPolicyBinding (cluster-scoped). */
export const VALIDATING_ADMISSION_POLICY_BINDING_RESOURCE: ResourceDefinition = {
  group: GROUP,
  version: 'v1',
  kind: 'ValidatingAdmissionPolicyBinding',
  plural: 'validatingadmissionpolicybindings',
  categories: ['api-extensions'],
  namespaced: false,
  builtin: true,
  validate: validateBinding,
};
