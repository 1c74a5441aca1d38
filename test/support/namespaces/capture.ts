/**
 * What really leaves a node: `tcpdump -U -w` on the root end of one of its underlay links (a port
 * of the underlay bridge), and a count of the captured packets that match a filter.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run, spawnProcess, type TestProcess } from '../process.js';
import type { TestNode } from './netns.js';

/** The root namespace's end of a node's veth `ifname` (a port of the bridge it is attached to). */
export async function rootPort(node: TestNode, ifname = 'eth0'): Promise<string> {
  const r = await node.exec('ip', ['-j', 'link', 'show', ifname]);
  const peer = (JSON.parse(r.stdout) as Array<{ link_index?: number }>)[0]?.link_index;
  if (peer === undefined) throw new Error(`${node.label}: ${ifname} is not a veth with a peer in the root namespace`);
  const links = JSON.parse((await run('ip', ['-j', 'link', 'show'])).stdout) as Array<{
    ifindex: number;
    ifname: string;
  }>;
  const port = links.find((l) => l.ifindex === peer)?.ifname;
  if (!port) throw new Error(`${node.label}: no link with index ${peer} in the root namespace for its ${ifname}`);
  return port;
}

/** A running capture on one bridge port. */
export class Capture {
  private constructor(
    private readonly proc: TestProcess,
    private readonly dir: string,
    readonly port: string,
  ) {}

  /** Starts `tcpdump -U -w` on `port` and waits until it listens. */
  static async start(port: string): Promise<Capture> {
    const dir = mkdtempSync(join(tmpdir(), 'wgo-capture-'));
    const proc = spawnProcess('tcpdump', ['-U', '-n', '-i', port, '-w', join(dir, 'capture.pcap')], {
      label: `tcpdump ${port}`,
    });
    await proc.waitForOutput(/listening on/, 10_000);
    return new Capture(proc, dir, port);
  }

  /** Stops the capture and counts the packets matching the tcpdump `filter`. */
  async stopAndCount(filter: string): Promise<{ count: number; lines: string[] }> {
    await this.proc.stop('SIGINT', 5_000);
    const r = await run('tcpdump', ['-n', '-r', join(this.dir, 'capture.pcap'), filter], { allowFailure: true });
    rmSync(this.dir, { recursive: true, force: true });
    if (r.exitCode !== 0) throw new Error(`tcpdump -r on the capture of ${this.port}: ${r.stderr.trim()}`);
    const lines = r.stdout.split('\n').filter((l) => l.trim() !== '');
    return { count: lines.length, lines };
  }
}
