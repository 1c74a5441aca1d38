/**
 * Which `ip monitor` lines the daemon takes for drift: deletions of routes on its interface and
 * of its own routes through a next hop (a location member's, which leave by eth0), changes of its
 * link; never additions, nor other owners' routes elsewhere, nor other links.
 */
import assert from 'node:assert/strict';
import { driftFilter } from '../../../service/src/host/monitor.js';

describe('unit: interface monitor filter', () => {
  const drift = driftFilter('wg0');
  const rows: Array<[string, boolean]> = [
    ['Deleted 10.244.4.0/24 dev wg0 proto 77 scope link ', true],
    ['Deleted 10.244.5.0/24 via 198.18.7.12 dev eth0 proto 77 ', true],
    ['Deleted 100.64.7.12 via 198.18.7.12 dev eth0 proto 77 ', true],
    ['Deleted 10.9.0.0/16 dev wg0 proto static scope link ', true],
    ['5: wg0: <POINTOPOINT,NOARP,UP,LOWER_UP> mtu 1420 qdisc noqueue state UNKNOWN group default ', true],
    ['Deleted 5: wg0: <POINTOPOINT,NOARP> mtu 1420 qdisc noop state DOWN group default ', true],
    ['10.244.5.0/24 via 198.18.7.12 dev eth0 proto 77 ', false],
    ['Deleted 10.1.0.0/16 via 198.18.7.1 dev eth0 proto static ', false],
    ['Deleted 10.1.0.0/16 via 198.18.7.1 dev eth0 proto 770 ', false],
    ['6: wg01: <POINTOPOINT,NOARP> mtu 1420 qdisc noop state DOWN group default ', false],
  ];
  for (const [line, want] of rows) {
    it(`${want ? 'drift' : 'not drift'}: ${line.trim()}`, () => assert.equal(drift(line), want));
  }
});
