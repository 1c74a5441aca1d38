/**
 * What the daemon prepares before it builds its parts: the config, this node's key and identity,
 * the Kubernetes access, systemd, and the API server's addresses; or the exit status when it
 * cannot start (78 when the admin must fix a file).
 */
import type { Config } from '../config/config.js';
import { EXIT_CONFIG, EXIT_FAILURE } from '../exit-status.js';
import { FORWARDING_OFF_WARNING } from '../host/forwarding.js';
import { onLinkSubnets } from '../host/link.js';
import { KubeconfigError } from '../kube/kubeconfig.js';
import { describeError, type Logger } from '../log/logger.js';
import { DEFAULT_POD_CIDRS } from '../mesh/membership/ranges.js';
import { parseIp } from '../net/ip.js';
import type { UnitController } from '../systemd/units.js';
import { VERSION } from '../version.js';
import { loadOrReport } from './config-reloader.js';
import type { DaemonEnv, KubeAccess } from './env.js';
import type { Identity } from './step-parts.js';

/** What the daemon has prepared before it builds its parts. */
export interface Prepared {
  config: Config;
  identity: Identity;
  kube: KubeAccess;
  units: UnitController | undefined;
  /** The API server's addresses as this node reaches it: never routed into the tunnel from this node. */
  apiAddresses: string[];
  /** This node's on-link underlay subnets: never routed into the tunnel from this node. */
  onLink: string[];
  loadedAt: number;
}

/** This node's identity with its private key (created on first start), logged; undefined when it cannot be loaded. */
async function loadIdentity(config: Config, env: DaemonEnv): Promise<Identity | undefined> {
  const { log } = env;
  const dir = config.state.dir;
  try {
    const key = await env.loadKey(dir);
    if (key.created) log.notice(`created a new WireGuard private key in ${dir}; public key ${key.publicKey}`);
    else log.info(`loaded the WireGuard private key from ${dir}; public key ${key.publicKey}`);
    if (key.fixedMode)
      log.warning(
        `the private key file in ${dir} was readable by group or others: its mode is now 0600 (check who could have read it)`,
      );
    return { name: config.kubernetes.nodeName, privateKey: key.privateKey, publicKey: key.publicKey };
  } catch (err) {
    log.error(describeError(err));
    return undefined;
  }
}

/** Loads what the daemon needs before it can build its parts; an exit status when it cannot. */
export async function prepare(configPath: string, env: DaemonEnv): Promise<Prepared | number> {
  const { log } = env;
  const loadedAt = Date.now();
  const config = await loadOrReport(env.loadConfig, configPath, log);
  if (!config) {
    log.error(`invalid configuration in ${configPath}; not starting`);
    return EXIT_CONFIG;
  }
  log.setLevel(config.log.level);
  const w = config.wireguard;
  log.info(
    `wg-overlay ${VERSION} starting: node ${config.kubernetes.nodeName}, interface ${w.interface}, config ${config.source}`,
  );
  const identity = await loadIdentity(config, env);
  if (!identity) return EXIT_FAILURE;
  let kube: KubeAccess;
  try {
    kube = await env.connectKube(config, log);
  } catch (err) {
    log.error(describeError(err));
    return err instanceof KubeconfigError ? EXIT_CONFIG : EXIT_FAILURE;
  }
  log.info(`API server ${kube.server} (kubeconfig ${config.kubernetes.kubeconfig})`);
  if ((await env.ipForwarding()) === false) log.warning(FORWARDING_OFF_WARNING);
  const units = w.createInterface ? await env.connectSystemd(log) : undefined;
  const apiAddresses = await apiServerAddresses(kube.server, env);
  const onLink = await onLinkSubnets(env.quietRunner, [w.interface]).catch((err: unknown) => {
    log.warning(`cannot list this host's on-link subnets (${describeError(err)}): they are not guarded against routes`);
    return [];
  });
  return { config, identity, kube, units, apiAddresses, onLink, loadedAt };
}

/** The API server's addresses (its URL's host, resolved when it is a name); none when unknown. */
export async function apiServerAddresses(
  server: string,
  env: Pick<DaemonEnv, 'lookupName' | 'log'>,
): Promise<string[]> {
  let host: string;
  try {
    host = new URL(server).hostname.replace(/^\[|\]$/g, '');
  } catch {
    return [];
  }
  if (parseIp(host)) return [host];
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      env.lookupName(host),
      new Promise<string[]>((_, reject) => {
        timer = setTimeout(() => reject(new Error('no answer within 5 s')), 5_000);
      }),
    ]);
  } catch (err) {
    env.log.warning(
      `cannot resolve the API server's name ${host} (${describeError(err)}): ranges containing its address are not refused`,
    );
    return [];
  } finally {
    clearTimeout(timer);
  }
}

/** Says once at start where a default leaves something to the admin (an IPv4-only overlay, a wide pod allow-list). */
export function noticeDefaults(config: Config, clusterCa: string | undefined, log: Logger): void {
  if (config.overlay.cidr6 === 'auto' && !clusterCa)
    log.notice(
      '[overlay] cidr6 = auto: the kubeconfig holds no cluster CA certificate to derive the IPv6 overlay from, so the ' +
        'overlay is IPv4 only (set cidr6 to a CIDR, the same on every node, for an IPv6 overlay)',
    );
  if (config.overlay.podCidrs.join() === DEFAULT_POD_CIDRS.join())
    log.notice(
      '[overlay] pod_cidrs is the default (every private-use range): a new Node may claim any unused private subnet as ' +
        "its PodCIDR; set it to the cluster's pod networks (kube-controller-manager --cluster-cidr)",
    );
}
