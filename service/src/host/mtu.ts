/**
 * The interface MTU for `[wireguard] mtu`: a number as configured, or `auto` (the underlay device's
 * MTU minus WireGuard's overhead), read from the host once per set of underlay addresses.
 */
import type { CommandRunner } from '../exec/runner.js';
import { inStep } from './apply-error.js';
import { autoMtu } from './link.js';

/** Resolves the MTU, reading the host only when `auto` meets underlay addresses it has not seen. */
export class MtuResolver {
  private cache: { ips: string; mtu: number } | undefined;

  constructor(private readonly runner: CommandRunner) {}

  /** The MTU for `setting` on a node with these underlay addresses. */
  async resolve(setting: number | 'auto', underlay: readonly string[]): Promise<number> {
    if (setting !== 'auto') return setting;
    const ips = underlay.join(',');
    if (this.cache?.ips === ips) return this.cache.mtu;
    const mtu = await inStep('interface', () => autoMtu(this.runner, underlay));
    this.cache = { ips, mtu };
    return mtu;
  }

  /** Forgets the host's answer (a config reload reads it again). */
  forget(): void {
    this.cache = undefined;
  }
}
