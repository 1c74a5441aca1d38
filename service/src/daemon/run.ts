/**
 * `wg-overlay run`: the long-running daemon. Validates the config, loads the key and the
 * kubeconfig, finds systemd (or not), starts Node discovery and the reconcile loop, and stops
 * cleanly on SIGTERM leaving the mesh up.
 */
import { readFile } from 'node:fs/promises';
import { ConfigError, loadConfig, type Config } from '../config/config.js';
import { ExecaRunner } from '../exec/runner.js';
import { ApiNodePublisher, DiscoveryState, KubeconfigError, ListNodeSource, loadKubeconfig, WatchNodeSource, type NodeSource } from '../kube/client.js';
import { createLogger, describeError, type Logger } from '../log/logger.js';
import { createNotifier } from '../systemd/notify.js';
import { SystemdUnits } from '../systemd/units.js';
import { watch as watchFile } from 'chokidar';
import { planReload } from './reload.js';
import { loadOrCreatePrivateKey } from '../wireguard/keys.js';
import { monitorInterface } from './monitor.js';
import { Reconciler } from './reconciler.js';
import { VERSION } from '../version.js';

/** Exit status for a configuration an admin must fix (EX_CONFIG); the unit does not restart on it. */
export const EXIT_CONFIG = 78;

/** Seconds between full resyncs that re-read the host even when no event arrived. */
const RESYNC_MS = 60_000;

/** True when IPv4 forwarding is on (pods behind this node are unreachable otherwise). */
export async function ipForwardingEnabled(): Promise<boolean | undefined> {
  try {
    return (await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8')).trim() === '1';
  } catch {
    return undefined;
  }
}

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
    log.warning('IPv4 forwarding is off (net.ipv4.ip_forward = 0): pods behind this node are unreachable from other nodes; enable it with sysctl -w net.ipv4.ip_forward=1');
  }

  const runner = new ExecaRunner(log);
  const units = w.createInterface ? await SystemdUnits.connect(log) : undefined;
  log.info(units
    ? `systemd found on the system bus: interface restarts go through wg-quick@${w.interface}.service`
    : `no systemd manager reachable: the daemon brings ${w.interface} up and down itself`);

  const notifier = createNotifier(log);
  const reconciler = new Reconciler({ runner, log, identity, publisher: new ApiNodePublisher(kc), units }, config);
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

  const discovery = new DiscoveryState(log, `node ${config.kubernetes.discovery}`);
  const source: NodeSource = config.kubernetes.discovery === 'watch'
    ? new WatchNodeSource(kc, log)
    : new ListNodeSource(kc, config.kubernetes.listIntervalSeconds * 1000);
  source.start({
    onNodes: (nodes) => reconciler.setNodes(nodes),
    onState: (up, err) => discovery.report(up, err),
  });

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
      void watcher.close();
      monitor.stop();
      void Promise.allSettled([source.stop(), reconciler.stop()]).then(() => {
        units?.close();
        log.info('stopped');
        resolve(0);
      });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}
