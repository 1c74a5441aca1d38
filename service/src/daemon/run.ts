/**
 * `wg-overlay run`: the production environment of the daemon (execa, client-node, dbus-next,
 * systemd-notify, `ip`), and the process around it: start, then stop on SIGTERM or SIGINT.
 */
import { lookup } from 'node:dns/promises';
import { loadConfig, type Config } from '../config/config.js';
import { EXIT_FAILURE } from '../exit-status.js';
import { hostRunners } from '../exec/shell-runner.js';
import { ipForwardingEnabled } from '../host/forwarding.js';
import { IpBatch } from '../host/ip-batch.js';
import { monitorInterface } from '../host/monitor.js';
import { nudge } from '../host/nudge.js';
import { clusterCa, currentToken, loadKubeconfig } from '../kube/kubeconfig.js';
import { ApiNodePolicyProbe } from '../kube/node-policy-probe.js';
import { ApiNodePublisher } from '../kube/node-publisher.js';
import { externalPeerSource, externalPeersApi } from '../kube/external-peer-source.js';
import { nodeSource, nodesApi } from '../kube/node-source.js';
import type { Discovery } from '../kube/source.js';
import { createLogger, describeError, type Logger } from '../log/logger.js';
import { startMetricsServer } from '../metrics/server.js';
import { createNotifier } from '../systemd/notify.js';
import { SystemdUnits } from '../systemd/units.js';
import { loadOrCreatePrivateKey, rotatePrivateKey } from '../wireguard/keys.js';
import { leasesApi } from '../kube/location-leases.js';
import { Daemon, type DaemonEnv, type KubeAccess } from './daemon.js';

export { EXIT_CONFIG } from '../exit-status.js';

/** Loads the kubeconfig and makes the Node and external-peer sources the config asks for. */
async function connectKube(config: Config, log: Logger): Promise<KubeAccess> {
  const kc = await loadKubeconfig(config.kubernetes.kubeconfig);
  const k = config.kubernetes;
  const discovery: Discovery =
    k.discovery === 'watch' ? { mode: 'watch' } : { mode: 'list', intervalMs: k.listIntervalSeconds * 1000 };
  return {
    server: kc.getCurrentCluster()?.server ?? '?',
    nodes: nodeSource(nodesApi(kc), log, discovery, { labels: [config.mesh.locationLabel, config.mesh.leaderLabel] }),
    externalPeers: externalPeerSource(externalPeersApi(kc), log, discovery),
    publisher: new ApiNodePublisher(kc),
    leases: (namespace) => leasesApi(kc, namespace),
    clusterCa: await clusterCa(kc),
    nodePolicy: new ApiNodePolicyProbe(kc),
    token: () => currentToken(kc),
  };
}

/** The daemon's environment on a real host. */
export function productionEnv(log: Logger): DaemonEnv {
  return {
    ...hostRunners(log),
    loadConfig,
    loadKey: loadOrCreatePrivateKey,
    rotateKey: rotatePrivateKey,
    connectKube,
    connectSystemd: (l) => SystemdUnits.connect(l),
    notifier: createNotifier(log),
    ipBatch: (l) => new IpBatch(l),
    monitor: monitorInterface,
    ipForwarding: ipForwardingEnabled,
    lookupName: async (name) => (await lookup(name, { all: true, verbatim: false })).map((a) => a.address),
    nudge,
    serveMetrics: startMetricsServer,
    signals: process,
  };
}

/** Runs the daemon until SIGTERM/SIGINT; resolves with the process exit status. */
export async function runDaemon(configPath: string): Promise<number> {
  const log = createLogger({ level: 'info' });
  const daemon = await Daemon.open(configPath, productionEnv(log));
  if (typeof daemon === 'number') return daemon;
  try {
    await daemon.start();
  } catch {
    return EXIT_FAILURE;
  }
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      daemon.stop(signal).then(
        () => resolve(0),
        (err: unknown) => {
          log.error(`stopping: ${describeError(err)}`);
          resolve(EXIT_FAILURE);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}
