/**
 * This node's key pair against squatting: when an older Node publishes this node's public key (a
 * cloned machine, or a Node copying keys), the key goes to the older Node on every node, so this
 * node takes a new key pair, at most once per interval (a Node that keeps copying is named in the
 * log each time), instead of staying out of the mesh silently.
 */
import type { Logger } from '../log/logger.js';
import { escapeUnsafe } from '../mesh/text.js';
import { StateReporter } from '../util/backoff.js';
import type { LoadedKey } from '../wireguard/keys.js';
import type { Identity } from './step-parts.js';

/** Options of the key keeper. */
export interface KeyKeeperOptions {
  /** This node's identity: its key fields are replaced in place when a new key is taken. */
  identity: Identity;
  stateDir: string;
  /** Replaces the key file with a new key and returns it. */
  rotate(stateDir: string): Promise<LoadedKey>;
  log: Logger;
  /** At most one new key per this many ms (default 10 minutes). */
  minIntervalMs?: number;
  now?: () => number;
}

/** Takes a new key pair when this node's is taken by an older Node. */
export class KeyKeeper {
  private lastRotation = -Infinity;
  private readonly reporter = new StateReporter();

  constructor(private readonly o: KeyKeeperOptions) {}

  /** An older Node (`by`) publishes this node's key: resolves true when a new key was taken. */
  async taken(by: string): Promise<boolean> {
    const now = (this.o.now ?? Date.now)();
    const interval = this.o.minIntervalMs ?? 10 * 60_000;
    const who = escapeUnsafe(by);
    if (now - this.lastRotation < interval) {
      if (this.reporter.changed('again', `${by}|${this.lastRotation}`))
        this.o.log.error(
          `Node ${who} publishes this node's new public key too: it is copying keys (investigate that node); ` +
            `this node is out of the mesh until it takes another key, at most once every ${Math.round(interval / 60_000)} min`,
        );
      return false;
    }
    const key = await this.o.rotate(this.o.stateDir);
    this.o.identity.privateKey = key.privateKey;
    this.o.identity.publicKey = key.publicKey;
    this.lastRotation = now;
    this.o.log.warning(
      `Node ${who}, older than this node, publishes this node's public key (a cloned machine, or a Node copying keys), ` +
        `so every node gives the key to it: this node took a new key pair (public key ${key.publicKey}) in ${this.o.stateDir}`,
    );
    return true;
  }
}
