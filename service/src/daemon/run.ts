/**
 * `wg-overlay run`: the long-running daemon. Validates the config, loads the key and the
 * kubeconfig, finds systemd (or not), starts Node discovery and the reconcile loop, and stops
 * cleanly on SIGTERM leaving the mesh up.
 */
import { stat } from 'node:fs/promises';
import { FORWARDING_OFF_WARNING, ipForwardingEnabled } from '../net/forwarding.js';
import { ConfigError, loadConfig, type Config } from '../config/config.js';
import { ExecaRunner } from '../exec/runner.js';
import { ApiNodePublisher, describeApiError, DiscoveryState, KubeconfigError, ListNodeSource, loadKubeconfig, WatchNodeSource, type NodeSource } from '../kube/client.js';
import { ListPeerSource, WatchPeerSource, type PeerSource, type PeerSourceState } from '../kube/peers.js';
import { DaemonMetrics, evaluateHealth, type HealthResult } from '../metrics/metrics.js';
import { startMetricsServer, type MetricsServer } from '../metrics/server.js';
import { buildSnapshot, writeStatusFile, type WatchStatus } from '../status/snapshot.js';
import { StateReporter } from '../util/backoff.js';
import { readDevice } from '../wireguard/device.js';
import { createLogger, describeError, type Logger } from '../log/logger.js';
import { createNotifier } from '../systemd/notify.js';
import { SystemdUnits } from '../systemd/units.js';
import { watch as watchFile } from 'chokidar';
import { planReload } from './reload.js';
import { loadOrCreatePrivateKey } from '../wireguard/keys.js';
import { monitorInterface } from './monitor.js';
import { IpBatch } from '../routes/batch.js';
import { Reconciler } from './reconciler.js';
import { VERSION } from '../version.js';

/** Exit status for a configuration an admin must fix (EX_CONFIG); the unit does not restart on it. */
export const EXIT_CONFIG = 78;

/** Seconds between full resyncs that re-read the host even when no event arrived. */
const RESYNC_MS = 60_000;

/** Loads the config, printing every problem and returning undefined when it is invalid. */
async function loadOrReport(path: string, log: Logger): Promise<Config | undefined> {
  try {
    const { config, warnings } = await loadConfig(path);
    for (const w of warnings) log.warning(w);
    return config;
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const p of err.problems) log.error(p);
      return undefined;
    }
    throw err;
  }
}

/** Runs the daemon until SIGTERM/SIGINT; resolves with the process exit status. */
export async function runDaemon(configPath: string): Promise<number> {
  const log = createLogger({ level: 'info' });
  const loadedAt = Date.now();
  const config = await loadOrReport(configPath, log);
  if (!config) {
    log.error(`invalid configuration in ${configPath}; not starting`);
    return EXIT_CONFIG;
  }
  log.setLevel(config.log.level);
  const w = config.wireguard;
  log.info(`wg-overlay ${VERSION} starting: node ${config.kubernetes.nodeName}, interface ${w.interface}, config ${config.source}`);

  let identity;
  try {
    const key = await loadOrCreatePrivateKey(config.state.dir);
    if (key.created) log.notice(`created a new WireGuard private key in ${config.state.dir}; public key ${key.publicKey}`);
    else log.info(`loaded the WireGuard private key from ${config.state.dir}; public key ${key.publicKey}`);
    identity = { name: config.kubernetes.nodeName, privateKey: key.privateKey, publicKey: key.publicKey };
  } catch (err) {
    log.error(describeError(err));
    return 1;
  }

  let kc;
  try {
    kc = await loadKubeconfig(config.kubernetes.kubeconfig);
  } catch (err) {
    log.error(describeError(err));
    return err instanceof KubeconfigError ? EXIT_CONFIG : 1;
  }
  log.info(`API server ${kc.getCurrentCluster()?.server ?? '?'} (kubeconfig ${config.kubernetes.kubeconfig})`);

  if ((await ipForwardingEnabled()) === false) {
    log.warning(FORWARDING_OFF_WARNING);
  }

  const runner = new ExecaRunner(log);
  const units = w.createInterface ? await SystemdUnits.connect(log) : undefined;
  log.info(units
    ? `systemd found on the system bus: interface restarts go through wg-quick@${w.interface}.service`
    : `no systemd manager reachable: the daemon brings ${w.interface} up and down itself`);

  const notifier = createNotifier(log);
  const ipBatch = new IpBatch(log);
  const reconciler = new Reconciler({ runner, log, identity, publisher: new ApiNodePublisher(kc), units, waitForPeers: true, ipBatch }, config);
  const summary = (): string => `${reconciler.desired?.peers.length ?? 0} peers, ${reconciler.desired?.routes.length ?? 0} routes, address ${reconciler.desired?.iface.address ?? '?'}`;
  reconciler.firstApply().then(() => {
    log.notice(`mesh applied: ${summary()}`);
    void notifier.ready(`mesh applied: ${summary()}`);
  }, () => undefined);

  // Reload: SIGHUP (systemctl reload) and edits of the config file. A bad file keeps the old config.
  let running = config;
  let reloading = Promise.resolve();
  const reload = (why: string): void => {
    reloading = reloading.then(async () => {
      await notifier.reloading();
      log.info(`reloading ${configPath} (${why})`);
      try {
        const next = await loadOrReport(configPath, log);
        if (!next) {
          log.error(`reload of ${configPath} rejected: the file is invalid; still running with the previous configuration`);
          return;
        }
        const plan = planReload(running, next);
        for (const key of plan.needRestart) log.warning(`${key} changed in ${configPath}: it takes effect only after \`systemctl restart wg-overlay\`; still using the running value`);
        running = plan.config;
        log.setLevel(running.log.level);
        applyMetricsConfig(running);
        writeStatus();
        if (plan.changed) reconciler.setConfig(running);
        else log.info('reload: nothing that applies at run time changed');
      } finally {
        await notifier.ready(`mesh applied: ${summary()}`);
      }
    });
  };
  process.on('SIGHUP', () => reload('SIGHUP'));
  let debounce: NodeJS.Timeout | undefined;
  const watcher = watchFile(configPath, { ignoreInitial: true, awaitWriteFinish: false });
  watcher.on('all', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => reload('the file changed'), 300);
  });
  watcher.on('error', (err) => log.warning(`watching ${configPath}: ${describeError(err)}`));
  // An edit between the first read and the watcher starting would otherwise go unnoticed.
  watcher.on('ready', () => {
    stat(configPath).then((st) => { if (st.mtimeMs >= loadedAt - 50) reload('the file changed during start-up'); }, () => undefined);
  });

  // Status file, metrics and health: what `wg-overlay status`, Prometheus and /healthz see.
  const startedAt = Date.now();
  const watch: { nodes: WatchStatus; peers: WatchStatus } = { nodes: { state: 'starting', since: startedAt }, peers: { state: 'starting', since: startedAt } };
  const statusReporter = new StateReporter();
  let statusQueued = false;
  let statusChain = Promise.resolve();
  // Written a moment after a change (a burst shares one write), off the path of the live apply.
  const writeStatus = (): void => {
    if (statusQueued) return;
    statusQueued = true;
    setTimeout(() => { statusChain = statusChain.then(writeNow); }, 200);
  };
  const writeNow = async (): Promise<void> => {
    statusQueued = false;
    const dir = running.state.runtimeDir;
    try {
      await writeStatusFile(dir, buildSnapshot({
        node: identity.name, iface: w.interface, startedAt, desired: reconciler.desired, waiting: reconciler.waiting,
        lastReport: reconciler.lastReport, lastSuccessAt: reconciler.lastSuccessAt, watch, now: Date.now(), pid: process.pid,
      }));
      statusReporter.changed('status', 'ok');
    } catch (err) {
      if (statusReporter.changed('status', describeError(err))) log.warning(`cannot write the status file for \`wg-overlay status\`: ${describeError(err)}`);
    }
  };
  const setWatch = (which: 'nodes' | 'peers', state: WatchStatus['state'], err?: unknown): void => {
    const cur = watch[which];
    const error = err === undefined ? undefined : describeApiError(err);
    if (cur.state !== state || cur.error !== error) watch[which] = { state, since: cur.state === state ? cur.since : Date.now(), ...(error ? { error } : {}) };
    metrics.setWatch(which, state === 'up' || state === 'absent');
    writeStatus();
  };
  const watchDownMs = (which: 'nodes' | 'peers'): number => {
    const s = watch[which];
    return s.state === 'down' || s.state === 'starting' ? Date.now() - s.since : 0;
  };
  const health = (): HealthResult => evaluateHealth({
    watches: [{ what: `node ${running.kubernetes.discovery}`, downForMs: discovery.downFor() }, { what: `peer ${running.kubernetes.discovery}`, downForMs: watchDownMs('peers') }],
    thresholdMs: running.metrics.watchDownThresholdSeconds * 1000,
    lastReport: reconciler.lastReport,
  });
  const quietRunner = new ExecaRunner();
  const metrics = new DaemonMetrics({
    node: identity.name,
    iface: w.interface,
    version: VERSION,
    readHandshakes: async () => {
      const dev = await readDevice(quietRunner, w.interface);
      if (!dev) throw new Error(`${w.interface} is missing`);
      const byKey = new Map((reconciler.desired?.peers ?? []).map((p) => [p.publicKey, p]));
      return dev.peers.map((p) => {
        const known = byKey.get(p.publicKey);
        return { kind: known?.kind ?? 'unknown', name: known?.name ?? p.publicKey, latestHandshake: p.latestHandshake };
      });
    },
  });
  let metricsServer: MetricsServer | undefined;
  let metricsListen = '';
  let metricsChain = Promise.resolve();
  const applyMetricsConfig = (cfg: Config): void => {
    metricsChain = metricsChain.then(async () => {
      const want = cfg.metrics.listen ? `${cfg.metrics.listen.host}|${cfg.metrics.listen.port}` : '';
      if (want === metricsListen) return;
      await metricsServer?.close();
      metricsServer = undefined;
      metricsListen = want;
      if (!cfg.metrics.listen) {
        log.info('metrics and health server off ([metrics] listen is empty)');
        return;
      }
      const { host, port } = cfg.metrics.listen;
      try {
        metricsServer = await startMetricsServer({ host, port, metrics, health, log });
        log.info(`metrics on http://${host.includes(':') ? `[${host}]` : host}:${metricsServer.address.port}/metrics, health on /healthz`);
      } catch (err) {
        log.warning(`cannot serve metrics on ${host}:${port} ([metrics] listen): ${describeError(err)}; running without metrics`);
      }
    });
  };
  applyMetricsConfig(config);
  reconciler.onReport = (r) => {
    metrics.observeReport(r, reconciler.desired, reconciler.lastSuccessAt);
    writeStatus();
  };

  const discovery = new DiscoveryState(log, `node ${config.kubernetes.discovery}`);
  const source: NodeSource = config.kubernetes.discovery === 'watch'
    ? new WatchNodeSource(kc, log)
    : new ListNodeSource(kc, config.kubernetes.listIntervalSeconds * 1000);
  source.start({
    onNodes: (nodes) => reconciler.setNodes(nodes),
    onState: (up, err) => {
      discovery.report(up, err);
      setWatch('nodes', up ? 'up' : 'down', err);
    },
  });

  // External Peers (Kilo's Peer resource) are optional: a missing CRD is logged once, never fatal.
  const peerSource: PeerSource = config.kubernetes.discovery === 'watch'
    ? new WatchPeerSource(kc, log)
    : new ListPeerSource(kc, log, config.kubernetes.listIntervalSeconds * 1000);
  peerSource.start({
    onPeers: (peers) => reconciler.setPeers(peers),
    onState: (state: PeerSourceState, err) => setWatch('peers', state, err),
  });
  // The first apply waits for the Peer list (a restart must not drop external peers for a
  // moment), but not for ever.
  const peerWait = setTimeout(() => {
    if (reconciler.peersKnown) return;
    log.warning('no Peer list from the API server after 10 s: applying the mesh without external Peers until it arrives');
    reconciler.setPeers([]);
  }, 10_000);

  const monitor = monitorInterface(w.interface, log, () => reconciler.schedule('routes or link changed on the host', true));
  const resync = setInterval(() => reconciler.schedule('periodic resync', true), RESYNC_MS);

  return await new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      log.info(`${signal}: stopping; ${w.interface}, its peers and routes stay up`);
      void notifier.stopping();
      clearInterval(resync);
      clearTimeout(debounce);
      clearTimeout(peerWait);
      void watcher.close();
      monitor.stop();
      const closeMetrics = metricsChain.then(() => metricsServer?.close());
      void Promise.allSettled([source.stop(), peerSource.stop(), reconciler.stop(), closeMetrics]).then(() => statusChain).then(() => {
        units?.close();
        ipBatch.close();
        log.info('stopped');
        resolve(0);
      });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}
