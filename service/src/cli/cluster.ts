/**
 * What the operator commands (`showconf`, `graph`, `status`, `connect`) share: their command line
 * (`--config FILE`, like `run`, and `--help`), reading the config file, reading the cluster's
 * Nodes and external peers through the kubeconfig it names, and errors that carry their exit status.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError, DEFAULT_CONFIG_PATH, loadConfig, type Config } from '../config/config.js';
import { EXIT_CONFIG, EXIT_FAILURE, EXIT_USAGE } from '../exit-status.js';
import { describeApiError } from '../kube/api-errors.js';
import { clusterCa, loadKubeconfig } from '../kube/kubeconfig.js';
import { leasesApi, readLiveness } from '../kube/location-leases.js';
import { listNodes } from '../kube/node-source.js';
import { externalPeersApi, listExternalPeers } from '../kube/external-peer-source.js';
import { topologySettings } from '../config/mesh-settings.js';
import { ClusterView } from '../mesh/cluster-view.js';
import type { Membership } from '../mesh/membership/membership.js';
import type { Liveness } from '../mesh/observations/leadership.js';
import { clusterTopology, type Topology } from '../mesh/desired/topology.js';
import type { MeshNode } from '../mesh/types.js';

/** A failure of a CLI command: the message is printed as `wg-overlay <cmd>: <message>`, then it exits with `code`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly code = EXIT_FAILURE,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** Loads the config file (`--config`, else the default one), printing its warnings to `err`; a bad file is a CliError with status 78. */
export async function loadCliConfig(path: string | undefined, err: NodeJS.WritableStream): Promise<Config> {
  try {
    const { config, warnings } = await loadConfig(path ?? DEFAULT_CONFIG_PATH);
    for (const w of warnings) err.write(`warning: ${w}\n`);
    return config;
  } catch (e) {
    if (e instanceof ConfigError) throw new CliError(e.problems.join('\n'), EXIT_CONFIG);
    throw e;
  }
}

/** The cluster as the API server reports it. */
export interface ClusterData {
  /** Its Nodes and external peers, and the membership they make. */
  view: ClusterView;
  /** True when the Peer CRD is not installed. */
  peersAbsent: boolean;
  /** The cluster's CA certificate, for `[overlay] cidr6 = auto`. */
  clusterCa: string | undefined;
}

/** Lists Nodes and external peers through the kubeconfig named by the config. */
export async function readCluster(config: Config): Promise<ClusterData> {
  let kc;
  try {
    kc = await loadKubeconfig(config.kubernetes.kubeconfig);
  } catch (e) {
    throw new CliError(e instanceof Error ? e.message : String(e), EXIT_CONFIG);
  }
  let nodes: MeshNode[];
  try {
    nodes = await listNodes(kc, { labels: [config.mesh.locationLabel, config.mesh.leaderLabel] });
  } catch (e) {
    throw new CliError(
      `listing Nodes from ${kc.getCurrentCluster()?.server ?? 'the API server'}: ${describeApiError(e)}`,
    );
  }
  try {
    const { externalPeers, absent } = await listExternalPeers(externalPeersApi(kc));
    return { view: ClusterView.of(nodes, externalPeers), peersAbsent: absent, clusterCa: await clusterCa(kc) };
  } catch (e) {
    throw new CliError(e instanceof Error ? e.message : String(e));
  }
}

/** Runs an argument parser; a parse error is a usage error that shows the usage text. */
export function usageErrors<T>(usage: string, parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    throw new CliError(`${e instanceof Error ? e.message : String(e)}\n${usage}`, EXIT_USAGE);
  }
}

/** Runs a command body, turning CliErrors into a message on `err` and their exit status. */
export async function runCli(name: string, err: NodeJS.WritableStream, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (e) {
    if (e instanceof CliError) {
      for (const line of e.message.split('\n')) err.write(`wg-overlay ${name}: ${line}\n`);
      return e.code;
    }
    throw e;
  }
}

/** The options every operator command takes besides its own: `-c/--config FILE` and `-h/--help`. */
const COMMON_OPTIONS = {
  config: { type: 'string', short: 'c' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** An operator command's command line: its name, its usage text, its own options, whether it takes operands. */
export interface CommandLine<O extends NonNullable<ParseArgsConfig['options']>, P extends boolean> {
  name: string;
  usage: string;
  options: O;
  positionals: P;
}

/** What `parseArgs` makes of a command line (its own options with `--config` and `--help`). */
export type ParsedCommand<O extends NonNullable<ParseArgsConfig['options']>, P extends boolean> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O & typeof COMMON_OPTIONS; allowPositionals: P }>
>;

/**
 * Runs an operator command: parses `argv` (a parse error is a usage error), prints the usage text
 * for `--help`, and otherwise runs `body` with what was parsed; resolves with the exit status.
 */
export function runCommand<O extends NonNullable<ParseArgsConfig['options']>, P extends boolean>(
  cmd: CommandLine<O, P>,
  io: { argv: string[]; out: NodeJS.WritableStream; err: NodeJS.WritableStream },
  body: (parsed: ParsedCommand<O, P>) => Promise<number>,
): Promise<number> {
  return runCli(cmd.name, io.err, async () => {
    const parsed = usageErrors(cmd.usage, () =>
      parseArgs({ args: io.argv, options: { ...COMMON_OPTIONS, ...cmd.options }, allowPositionals: cmd.positionals }),
    );
    if ((parsed.values as { help?: boolean }).help) {
      io.out.write(cmd.usage);
      return 0;
    }
    return body(parsed);
  });
}

/** An operator command as main.ts calls it: its arguments in, its exit status out (output to `out`, errors to `err`). */
export type OperatorCommand = (
  argv: string[],
  out?: NodeJS.WritableStream,
  err?: NodeJS.WritableStream,
) => Promise<number>;

/** The operator command that runs `body` on its parsed command line (see `runCommand`), writing to stdout and stderr unless told otherwise. */
export function operatorCommand<O extends NonNullable<ParseArgsConfig['options']>, P extends boolean>(
  cmd: CommandLine<O, P>,
  body: (
    parsed: ParsedCommand<O, P>,
    io: { out: NodeJS.WritableStream; err: NodeJS.WritableStream },
  ) => Promise<number>,
): OperatorCommand {
  return (argv, out = process.stdout, err = process.stderr) =>
    runCommand(cmd, { argv, out, err }, (parsed) => body(parsed, { out, err }));
}

/** Who the location Leases show alive (undefined when they cannot be read: leaders by rank alone). */
export async function readLeaderLiveness(config: Config): Promise<Liveness | undefined> {
  const m = config.mesh;
  if (m.granularity !== 'location') return undefined;
  try {
    const kc = await loadKubeconfig(config.kubernetes.kubeconfig);
    return await readLiveness(leasesApi(kc, m.leaseNamespace), m.leaderLeaseSeconds);
  } catch {
    return undefined;
  }
}

/**
 * The topology of the cluster for `[mesh] granularity = location` or `cross` (undefined for a full
 * mesh), with the location Leases read once.
 */
export async function readTopology(
  config: Config,
  view: ClusterView,
  membership: Membership,
): Promise<Topology | undefined> {
  if (config.mesh.granularity === 'full') return undefined;
  return clusterTopology({
    members: membership.members,
    nodes: view.nodes,
    settings: topologySettings(config),
    liveness: await readLeaderLiveness(config),
  });
}
