/*
 * The resource types the test API server serves: the definition format used by
 * `registerResource` (like a CustomResourceDefinition's names and scope), the built-in
 * core/v1 Node type, Kilo's Peer type, and everything derived from a definition that the
 * wire needs: discovery documents (APIResourceList, APIGroup) and server-side `Table`
 * rendering for kubectl (Node columns like the real printers, Name/Age for others).
 */
import { getPath, isObject } from './json.js';
import { NODE_SCHEMA, type StrategicSchema } from './patch.js';

/** Object metadata as stored by the server. */
export interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  [key: string]: unknown;
}

/** Any Kubernetes object as JSON. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
  [key: string]: unknown;
}

/** A printer column in CRD `additionalPrinterColumns` form (jsonPath is a simple dotted path). */
export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  jsonPath: string;
  description?: string;
  priority?: number;
  format?: string;
}

/** What `registerResource` takes: a resource type's names, scope and behaviour. */
export interface ResourceDefinition {
  /** API group; '' is the legacy core group served under /api/v1. */
  group: string;
  version: string;
  kind: string;
  plural: string;
  singular?: string;
  shortNames?: string[];
  categories?: string[];
  namespaced?: boolean;
  listKind?: string;
  /** Serve `<plural>/<name>/status`; writes to the main resource then keep the old status. */
  statusSubresource?: boolean;
  /** Strategic-merge list strategies; when absent, strategic merge patches get 415 like custom resources. */
  strategicMergeSchema?: StrategicSchema;
  /** Fields usable in fieldSelector besides metadata.name and metadata.namespace. */
  selectableFields?: string[];
  additionalPrinterColumns?: PrinterColumn[];
  /**
   * Behave like a built-in type instead of a custom resource: list items carry no kind/apiVersion,
   * no metadata.generation, and PUT without metadata.resourceVersion is an unconditional update.
   */
  builtin?: boolean;
  /** Checks an object's contents on create and update (after metadata); throws an ApiError (e.g. 422 Invalid) to refuse it. */
  validate?: (obj: KubeObject) => void;
  /** Subresources other than `status`, for discovery only (their requests are handled by the server itself). */
  subresources?: SubresourceDefinition[];
}

/** A subresource as discovery lists it, e.g. `serviceaccounts/token` (kind TokenRequest of authentication.k8s.io/v1). */
export interface SubresourceDefinition {
  name: string;
  kind: string;
  group?: string;
  version?: string;
  verbs: string[];
}

/** One column of a server-side Table and how to compute its cell. */
export interface TableColumn {
  name: string;
  type: string;
  format: string;
  description: string;
  priority: number;
  cell: (obj: KubeObject, now: number) => unknown;
}

/** A registered resource type with every default filled in. */
export interface Resource {
  key: string;
  group: string;
  version: string;
  apiVersion: string;
  kind: string;
  listKind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  categories: string[];
  namespaced: boolean;
  statusSubresource: boolean;
  builtin: boolean;
  strategic?: StrategicSchema;
  selectableFields: string[];
  columns: TableColumn[];
  validate?: (obj: KubeObject) => void;
  subresources: SubresourceDefinition[];
}

/** The core/v1 Node type: status subresource, short name `no`, strategic merge, Node printer columns. */
export const NODE_RESOURCE: ResourceDefinition = {
  group: '',
  version: 'v1',
  kind: 'Node',
  plural: 'nodes',
  singular: 'node',
  shortNames: ['no'],
  namespaced: false,
  statusSubresource: true,
  strategicMergeSchema: NODE_SCHEMA,
  selectableFields: ['spec.unschedulable'],
  builtin: true,
};

/** Kilo's Peer custom resource (kilo.squat.ai/v1alpha1, cluster-scoped): `server.registerResource(KILO_PEER_RESOURCE)`. */
export const KILO_PEER_RESOURCE: ResourceDefinition = {
  group: 'kilo.squat.ai',
  version: 'v1alpha1',
  kind: 'Peer',
  plural: 'peers',
  singular: 'peer',
  namespaced: false,
};

/** The core/v1 ServiceAccount type with its `token` subresource (the TokenRequest API): `new KubeApiServer({ serviceAccounts: true })`. */
export const SERVICE_ACCOUNT_RESOURCE: ResourceDefinition = {
  group: '',
  version: 'v1',
  kind: 'ServiceAccount',
  plural: 'serviceaccounts',
  singular: 'serviceaccount',
  shortNames: ['sa'],
  namespaced: true,
  builtin: true,
  subresources: [
    { name: 'token', kind: 'TokenRequest', group: 'authentication.k8s.io', version: 'v1', verbs: ['create'] },
  ],
};

/** coordination.k8s.io/v1 Lease (namespaced; wg-overlay's location leaders). */
export const LEASE_RESOURCE: ResourceDefinition = {
  group: 'coordination.k8s.io',
  version: 'v1',
  kind: 'Lease',
  plural: 'leases',
  singular: 'lease',
  namespaced: true,
  builtin: true,
};

/** Kubernetes' HumanDuration: `45s`, `3m12s`, `5h`, `2d3h`, `3y12d`. */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8)
    return hours % 24 === 0 ? `${Math.floor(hours / 24)}d` : `${Math.floor(hours / 24)}d${hours % 24}h`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  const years = Math.floor(hours / 24 / 365);
  if (hours < 24 * 365 * 8) {
    const dy = Math.floor(hours / 24) % 365;
    return dy === 0 ? `${years}y` : `${years}y${dy}d`;
  }
  return `${years}y`;
}

function age(obj: KubeObject, now: number): string {
  const ts = obj.metadata?.creationTimestamp;
  if (!ts) return '<unknown>';
  return humanDuration(now - Date.parse(ts));
}

const NAME_COLUMN: TableColumn = {
  name: 'Name',
  type: 'string',
  format: 'name',
  description: 'Name must be unique within a namespace.',
  priority: 0,
  cell: (o) => o.metadata?.name ?? '',
};

const AGE_COLUMN: TableColumn = {
  name: 'Age',
  type: 'string',
  format: '',
  description: 'CreationTimestamp is a timestamp representing the server time when this object was created.',
  priority: 0,
  cell: age,
};

function nodeAddress(obj: KubeObject, type: string): string {
  const addrs = getPath(obj, 'status.addresses');
  if (Array.isArray(addrs)) {
    for (const a of addrs) if (isObject(a) && a.type === type && typeof a.address === 'string') return a.address;
  }
  return '<none>';
}

function nodeStatus(obj: KubeObject): string {
  const conds = getPath(obj, 'status.conditions');
  let status = 'Unknown';
  if (Array.isArray(conds)) {
    for (const c of conds) if (isObject(c) && c.type === 'Ready') status = c.status === 'True' ? 'Ready' : 'NotReady';
  }
  if (getPath(obj, 'spec.unschedulable') === true) status += ',SchedulingDisabled';
  return status;
}

function nodeRoles(obj: KubeObject): string {
  const roles = new Set<string>();
  for (const [k, v] of Object.entries(obj.metadata?.labels ?? {})) {
    if (k.startsWith('node-role.kubernetes.io/')) roles.add(k.slice('node-role.kubernetes.io/'.length));
    else if (k === 'kubernetes.io/role' && v) roles.add(v);
  }
  return roles.size ? [...roles].sort().join(',') : '<none>';
}

function nodeInfo(field: string, dflt: string) {
  return (o: KubeObject) => {
    const v = getPath(o, `status.nodeInfo.${field}`);
    return typeof v === 'string' && v ? v : dflt;
  };
}

const NODE_COLUMNS: TableColumn[] = [
  NAME_COLUMN,
  { name: 'Status', type: 'string', format: '', description: 'The status of the node', priority: 0, cell: nodeStatus },
  { name: 'Roles', type: 'string', format: '', description: 'The roles of the node', priority: 0, cell: nodeRoles },
  AGE_COLUMN,
  {
    name: 'Version',
    type: 'string',
    format: '',
    description: 'Kubelet Version reported by the node.',
    priority: 0,
    cell: nodeInfo('kubeletVersion', ''),
  },
  {
    name: 'Internal-IP',
    type: 'string',
    format: '',
    description: 'List of addresses reachable to the node.',
    priority: 1,
    cell: (o) => nodeAddress(o, 'InternalIP'),
  },
  {
    name: 'External-IP',
    type: 'string',
    format: '',
    description: 'List of addresses reachable to the node.',
    priority: 1,
    cell: (o) => nodeAddress(o, 'ExternalIP'),
  },
  {
    name: 'OS-Image',
    type: 'string',
    format: '',
    description: 'OS Image reported by the node.',
    priority: 1,
    cell: nodeInfo('osImage', '<unknown>'),
  },
  {
    name: 'Kernel-Version',
    type: 'string',
    format: '',
    description: 'Kernel Version reported by the node.',
    priority: 1,
    cell: nodeInfo('kernelVersion', '<unknown>'),
  },
  {
    name: 'Container-Runtime',
    type: 'string',
    format: '',
    description: 'Container Runtime Version reported by the node.',
    priority: 1,
    cell: nodeInfo('containerRuntimeVersion', '<unknown>'),
  },
];

function printerColumn(c: PrinterColumn): TableColumn {
  return {
    name: c.name,
    type: c.type === 'date' ? 'date' : c.type,
    format: c.format ?? '',
    description: c.description ?? '',
    priority: c.priority ?? 0,
    cell: (o, now) => {
      const v = getPath(o, c.jsonPath.replace(/^\./, ''));
      if (c.type === 'date') return typeof v === 'string' ? humanDuration(now - Date.parse(v)) : '<unknown>';
      if (v === undefined || v === null) return null;
      return typeof v === 'object' ? JSON.stringify(v) : v;
    },
  };
}

/** The key a resource type is stored and looked up under: `<group>/<plural>` (`/nodes` for the core group). */
export function resourceKey(def: Pick<ResourceDefinition, 'group' | 'plural'>): string {
  return `${def.group}/${def.plural}`;
}

/** Fills in the defaults of a definition (singular, listKind, columns, ...). */
export function resolveResource(def: ResourceDefinition): Resource {
  const builtin = def.builtin ?? false;
  let columns: TableColumn[];
  if (def.group === '' && def.plural === 'nodes') columns = NODE_COLUMNS;
  else if (def.additionalPrinterColumns?.length)
    columns = [NAME_COLUMN, ...def.additionalPrinterColumns.map(printerColumn)];
  else columns = [NAME_COLUMN, AGE_COLUMN];
  const r: Resource = {
    key: resourceKey(def),
    group: def.group,
    version: def.version,
    apiVersion: def.group ? `${def.group}/${def.version}` : def.version,
    kind: def.kind,
    listKind: def.listKind ?? `${def.kind}List`,
    plural: def.plural,
    singular: def.singular ?? def.kind.toLowerCase(),
    shortNames: def.shortNames ?? [],
    categories: def.categories ?? [],
    namespaced: def.namespaced ?? false,
    statusSubresource: def.statusSubresource ?? false,
    builtin,
    selectableFields: [
      'metadata.name',
      ...(def.namespaced ? ['metadata.namespace'] : []),
      ...(def.selectableFields ?? []),
    ],
    columns,
    subresources: def.subresources ?? [],
  };
  if (def.validate) r.validate = def.validate;
  if (def.strategicMergeSchema) r.strategic = def.strategicMergeSchema;
  return r;
}

/** The APIResourceList discovery document for one group/version. */
export function apiResourceList(groupVersion: string, resources: Resource[]): Record<string, unknown> {
  const out: Array<Record<string, unknown>> = [];
  for (const r of resources) {
    const entry: Record<string, unknown> = {
      name: r.plural,
      singularName: r.singular,
      namespaced: r.namespaced,
      kind: r.kind,
      verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'],
    };
    if (r.shortNames.length) entry.shortNames = r.shortNames;
    if (r.categories.length) entry.categories = r.categories;
    out.push(entry);
    if (r.statusSubresource) {
      out.push({
        name: `${r.plural}/status`,
        singularName: '',
        namespaced: r.namespaced,
        kind: r.kind,
        verbs: ['get', 'patch', 'update'],
      });
    }
    for (const sub of r.subresources) {
      const entry: Record<string, unknown> = {
        name: `${r.plural}/${sub.name}`,
        singularName: '',
        namespaced: r.namespaced,
        kind: sub.kind,
        verbs: sub.verbs,
      };
      if (sub.group !== undefined) entry.group = sub.group;
      if (sub.version !== undefined) entry.version = sub.version;
      out.push(entry);
    }
  }
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion, resources: out };
}

/** The APIGroup discovery document for a group and its versions (first = preferred). */
export function apiGroup(name: string, versions: string[]): Record<string, unknown> {
  const vs = versions.map((v) => ({ groupVersion: `${name}/${v}`, version: v }));
  return { kind: 'APIGroup', apiVersion: 'v1', name, versions: vs, preferredVersion: vs[0] };
}

/** How a Table request wants row objects: `includeObject=None|Metadata|Object`. */
export type IncludeObject = 'None' | 'Metadata' | 'Object';

/** Renders objects as a meta.k8s.io Table (`tableVersion` v1 or v1beta1). */
export function toTable(
  r: Resource,
  objs: KubeObject[],
  opts: {
    tableVersion: string;
    includeObject: IncludeObject;
    resourceVersion?: string;
    withColumns?: boolean;
    listMeta?: Record<string, unknown>;
  },
): Record<string, unknown> {
  const now = Date.now();
  const metaApiVersion = `meta.k8s.io/${opts.tableVersion}`;
  const rows = objs.map((o) => {
    const row: Record<string, unknown> = { cells: r.columns.map((c) => c.cell(o, now)) };
    if (opts.includeObject === 'Object') row.object = o;
    else if (opts.includeObject === 'Metadata')
      row.object = { kind: 'PartialObjectMetadata', apiVersion: metaApiVersion, metadata: o.metadata ?? {} };
    return row;
  });
  const table: Record<string, unknown> = {
    kind: 'Table',
    apiVersion: metaApiVersion,
    metadata: { ...(opts.listMeta ?? {}), ...(opts.resourceVersion ? { resourceVersion: opts.resourceVersion } : {}) },
  };
  if (opts.withColumns !== false) {
    table.columnDefinitions = r.columns.map((c) => ({
      name: c.name,
      type: c.type,
      format: c.format,
      description: c.description,
      priority: c.priority,
    }));
  } else {
    table.columnDefinitions = null;
  }
  table.rows = rows;
  return table;
}
