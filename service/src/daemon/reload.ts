/**
 * Config reload rules: which settings take effect at run time and which need a restart of the
 * daemon. Pure: old config + new config → the config to run with and what to tell the admin.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Config } from '../config/config.js';

/** Settings (as `[section] key`) that only take effect when the daemon restarts, and how to read them. */
const RESTART_ONLY: Array<[string, (c: Config) => unknown, (target: Config, from: Config) => void]> = [
  [
    '[kubernetes] kubeconfig',
    (c) => c.kubernetes.kubeconfig,
    (t, f) => {
      t.kubernetes.kubeconfig = f.kubernetes.kubeconfig;
    },
  ],
  [
    '[kubernetes] node_name',
    (c) => c.kubernetes.nodeName,
    (t, f) => {
      t.kubernetes.nodeName = f.kubernetes.nodeName;
    },
  ],
  [
    '[kubernetes] discovery',
    (c) => c.kubernetes.discovery,
    (t, f) => {
      t.kubernetes.discovery = f.kubernetes.discovery;
    },
  ],
  [
    '[kubernetes] list_interval',
    (c) => c.kubernetes.listIntervalSeconds,
    (t, f) => {
      t.kubernetes.listIntervalSeconds = f.kubernetes.listIntervalSeconds;
    },
  ],
  [
    '[wireguard] interface',
    (c) => c.wireguard.interface,
    (t, f) => {
      t.wireguard.interface = f.wireguard.interface;
    },
  ],
  [
    '[wireguard] config_file',
    (c) => c.wireguard.configFile,
    (t, f) => {
      t.wireguard.configFile = f.wireguard.configFile;
    },
  ],
  [
    '[wireguard] create_interface',
    (c) => c.wireguard.createInterface,
    (t, f) => {
      t.wireguard.createInterface = f.wireguard.createInterface;
    },
  ],
  [
    '[state] dir',
    (c) => c.state.dir,
    (t, f) => {
      t.state.dir = f.state.dir;
    },
  ],
  [
    '[mesh] location_label',
    (c) => c.mesh.locationLabel,
    (t, f) => {
      t.mesh.locationLabel = f.mesh.locationLabel;
    },
  ],
  [
    '[mesh] lease_namespace',
    (c) => c.mesh.leaseNamespace,
    (t, f) => {
      t.mesh.leaseNamespace = f.mesh.leaseNamespace;
    },
  ],
  [
    '[mesh] leader_lease',
    (c) => c.mesh.leaderLeaseSeconds,
    (t, f) => {
      t.mesh.leaderLeaseSeconds = f.mesh.leaderLeaseSeconds;
    },
  ],
];

/** The outcome of comparing a reloaded config with the running one. */
export interface ReloadPlan {
  /** The config to run with from now on (restart-only settings keep their running values). */
  config: Config;
  /** Restart-only settings that changed in the file (`[section] key`). */
  needRestart: string[];
  /** True when anything that applies at run time changed. */
  changed: boolean;
}

/** Splits a reloaded config into what applies now and what needs a restart. */
export function planReload(running: Config, loaded: Config): ReloadPlan {
  const next: Config = structuredClone(loaded);
  const needRestart: string[] = [];
  for (const [name, get, keep] of RESTART_ONLY) {
    if (!isDeepStrictEqual(get(running), get(loaded))) {
      needRestart.push(name);
      keep(next, running);
    }
  }
  return {
    config: next,
    needRestart,
    changed: !isDeepStrictEqual({ ...next, source: '' }, { ...running, source: '' }),
  };
}
