/**
 * Telling the daemon's own changes from drift in `ip monitor` lines: a route deletion the route
 * adapter announced (IPv4, IPv6, host routes printed without a prefix) is its own once and only
 * for a while; link churn during a recreate is its own; anything else is drift.
 */
import assert from 'node:assert/strict';
import { OwnChanges } from '../../../service/src/host/own-changes.js';

describe('unit: own changes seen by the interface monitor', () => {
  it('recognises announced route deletions once, within their time', () => {
    let now = 1_000;
    const own = new OwnChanges(() => now);
    own.expectRouteDeletion('10.244.3.0/24');
    own.expectRouteDeletion('10.5.0.2/32');
    own.expectRouteDeletion('fd00:10:244:3::/64');
    assert.equal(own.isOwn('Deleted 10.244.3.0/24 dev wg0 proto 77 scope link'), true);
    assert.equal(own.isOwn('Deleted 10.244.3.0/24 dev wg0 proto 77 scope link'), false, 'only once');
    assert.equal(own.isOwn('Deleted 10.5.0.2 dev wg0 proto 77 scope link'), true, 'host route printed without /32');
    assert.equal(own.isOwn('Deleted fd00:10:244:3::/64 dev wg0 proto 77 metric 1024 pref medium'), true);
    assert.equal(own.isOwn('Deleted 10.244.9.0/24 dev wg0 proto 77 scope link'), false, 'not announced: drift');
    own.expectRouteDeletion('10.244.4.0/24');
    now += 6_000;
    assert.equal(own.isOwn('Deleted 10.244.4.0/24 dev wg0 proto 77 scope link'), false, 'too late: drift');
  });

  it('treats every event as its own during announced link churn, and none after', () => {
    let now = 0;
    const own = new OwnChanges(() => now);
    assert.equal(own.isOwn('12: wg0: <POINTOPOINT,NOARP,UP,LOWER_UP> mtu 1420'), false);
    own.expectLinkChurn(1_000);
    assert.equal(own.isOwn('Deleted 12: wg0: <POINTOPOINT,NOARP> mtu 1420'), true);
    assert.equal(own.isOwn('Deleted fe80::/64 dev wg0 proto kernel metric 256 pref medium'), true);
    assert.equal(
      own.isOwn('Deleted 10.244.2.0/24 dev wg0 proto 77 scope link'),
      false,
      'one of its routes, not announced: drift even now',
    );
    own.expectRouteDeletion('10.244.2.0/24');
    assert.equal(own.isOwn('Deleted 10.244.2.0/24 dev wg0 proto 77 scope link'), true, 'announced');
    now = 2_000;
    assert.equal(own.isOwn('13: wg0: <POINTOPOINT,NOARP,UP,LOWER_UP> mtu 1420'), false);
  });

  it('once the recreate is done, drift counts again after a short grace, not after the whole window', () => {
    let now = 0;
    const own = new OwnChanges(() => now);
    own.expectLinkChurn(10_000);
    now = 3_000;
    own.linkChurnDone(1_000);
    now = 3_500;
    assert.equal(
      own.isOwn('Deleted local 100.64.2.11 dev wg0 table local proto kernel scope host'),
      true,
      'in flight from the recreate',
    );
    now = 4_500;
    assert.equal(
      own.isOwn('Deleted local 100.64.2.11 dev wg0 table local proto kernel scope host'),
      false,
      'after the grace: drift',
    );
  });
});
