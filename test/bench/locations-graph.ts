/**
 * The README picture of locations: brings up the two-location cluster of the e2e test
 * (`granularity = location`, east led by east-1, west by west-1), runs `wg-overlay graph` inside
 * east-1 with its own config, and writes the DOT to a file, or the SVG when the file ends in .svg
 * (rendered with `dot -Tsvg`). Needs root, like the e2e tests.
 *
 *   node dist/test/bench/locations-graph.js docs/locations.svg
 *   npm run bench -- locations-graph docs/locations.svg
 */
import { writeFile } from 'node:fs/promises';
import { CLI, waitFor } from '../support/cluster/cluster.js';
import { LocationCluster, TWO_LOCATIONS } from '../support/cluster/locations.js';
import { requireTools, run } from '../support/process.js';

async function main(): Promise<void> {
  const out = process.argv[2];
  if (!out) throw new Error('usage: locations-graph OUTPUT.dot|OUTPUT.svg');
  const svg = out.endsWith('.svg');
  await requireTools(['wg', 'wireguard-go', 'ip', 'nsenter', 'unshare', ...(svg ? ['dot'] : [])]);
  const lc = await LocationCluster.create(TWO_LOCATIONS, { granularity: 'location' });
  try {
    const leaders = { east: 'east-1', west: 'west-1' };
    await lc.waitForTopology('location', leaders, { timeoutMs: 30_000 });
    await waitFor(
      'the leaders to hold their Leases',
      () => lc.lease('east')?.holder === 'east-1' && lc.lease('west')?.holder === 'west-1',
    );
    // a handshake on the tunnel, so the graph shows a live link
    await lc.cluster
      .must('east-3')
      .pod!.exec('ping', ['-c', '2', '-i', '0.2', '-W', '2', lc.cluster.must('west-2').podIp]);
    const dot = (
      await lc.cluster.must('east-1').host.exec('node', [CLI, 'graph', '--config', '/etc/wg-overlay/wg-overlay.conf'])
    ).stdout;
    await writeFile(out, svg ? (await run('dot', ['-Tsvg'], { input: dot })).stdout : dot);
    process.stdout.write(
      `wrote ${out} (${svg ? 'SVG' : 'DOT'} of wg-overlay graph on east-1, ${lc.cluster.nodes.size} nodes in ${lc.locations.length} locations)\n`,
    );
  } finally {
    await lc.destroy();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(
      `locations-graph failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  },
);
