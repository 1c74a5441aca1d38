/**
 * The external-peer resource as `kube/external-peer-translate.ts` reads it: the shipped Peer CRD
 * (packaging/kubernetes/crd-peer.yaml) is Kilo's definition, with the group, version and plural the
 * daemon lists and watches: same names, scope and schema (types, required fields), so Kilo Peer
 * manifests apply unchanged. The Kilo manifest fixture used by the e2e test is the one in the
 * seeds, verbatim, and translates into the external peer the daemon then skips for its placeholder key.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import * as k8s from '@kubernetes/client-node';
import {
  EXTERNAL_PEER_GROUP,
  EXTERNAL_PEER_PLURAL,
  EXTERNAL_PEER_VERSION,
  toExternalPeer,
} from '../../../service/src/kube/external-peer-translate.js';
import { validateExternalPeer } from '../../../service/src/mesh/membership/external-peers.js';

const ROOT = new URL('../../../..', import.meta.url);
const CRD = new URL('packaging/kubernetes/crd-peer.yaml', ROOT);
const FIXTURE = new URL('test/fixtures/kilo/peer-my-device.yaml', ROOT);
const SEED = new URL('../shared/seeds/004_55c6f48ac33ea76c.txt', ROOT);

type Schema = {
  type?: string;
  required?: string[];
  properties?: Record<string, Schema>;
  items?: Schema;
  format?: string;
};

/** The schema's shape: types, formats and required lists, without descriptions. */
function shape(s: Schema | undefined): unknown {
  if (!s) return undefined;
  return {
    type: s.type,
    ...(s.format ? { format: s.format } : {}),
    ...(s.required ? { required: [...s.required].sort() } : {}),
    ...(s.items ? { items: shape(s.items) } : {}),
    ...(s.properties
      ? {
          properties: Object.fromEntries(
            Object.entries(s.properties)
              .map(([k, v]) => [k, shape(v)])
              .sort(),
          ),
        }
      : {}),
  };
}

describe("unit: external peers: Kilo's Peer CRD, manifests and translation", () => {
  it('crd-peer.yaml defines peers.kilo.squat.ai exactly as Kilo does', () => {
    // loadYaml returns client-node's model classes: compare their plain JSON form.
    const crd = JSON.parse(JSON.stringify(k8s.loadYaml(readFileSync(CRD, 'utf8')))) as {
      apiVersion: string;
      kind: string;
      metadata: { name: string };
      spec: Record<string, unknown>;
    };
    assert.equal(crd.apiVersion, 'apiextensions.k8s.io/v1');
    assert.equal(crd.kind, 'CustomResourceDefinition');
    assert.equal(crd.metadata.name, 'peers.kilo.squat.ai');
    const spec = crd.spec as {
      group: string;
      scope: string;
      names: Record<string, string>;
      versions: Array<{ name: string; served: boolean; storage: boolean; schema: { openAPIV3Schema: Schema } }>;
    };
    assert.equal(spec.group, 'kilo.squat.ai');
    assert.equal(spec.group, EXTERNAL_PEER_GROUP, 'the group the daemon lists and watches');
    assert.equal(spec.scope, 'Cluster');
    assert.deepEqual(spec.names, { kind: 'Peer', listKind: 'PeerList', plural: 'peers', singular: 'peer' });
    assert.equal(spec.versions.length, 1);
    const v = spec.versions[0]!;
    assert.deepEqual([v.name, v.served, v.storage], ['v1alpha1', true, true]);
    assert.deepEqual([v.name, spec.names.plural], [EXTERNAL_PEER_VERSION, EXTERNAL_PEER_PLURAL]);
    // Kilo 0.7's schema (manifests/crds.yaml), types and required fields.
    const kilo = {
      type: 'object',
      required: ['spec'],
      properties: {
        apiVersion: { type: 'string' },
        kind: { type: 'string' },
        metadata: { type: 'object' },
        spec: {
          type: 'object',
          required: ['allowedIPs', 'publicKey'],
          properties: {
            allowedIPs: { type: 'array', items: { type: 'string' } },
            endpoint: {
              type: 'object',
              required: ['dnsOrIP', 'port'],
              properties: {
                dnsOrIP: { type: 'object', properties: { dns: { type: 'string' }, ip: { type: 'string' } } },
                port: { type: 'integer', format: 'int32' },
              },
            },
            persistentKeepalive: { type: 'integer' },
            presharedKey: { type: 'string' },
            publicKey: { type: 'string' },
          },
        },
      },
    };
    assert.deepEqual(shape(v.schema.openAPIV3Schema), shape(kilo as Schema));
  });

  it("the e2e fixture is the seeds' Kilo Peer manifest, verbatim", function () {
    if (!existsSync(SEED)) this.skip();
    const seed = readFileSync(SEED, 'utf8');
    const block = /```yaml\n(apiVersion: kilo\.squat\.ai\/v1alpha1\nkind: Peer\n[\s\S]*?)```/.exec(seed)?.[1];
    assert.ok(block, 'the seed has a Peer manifest');
    assert.equal(readFileSync(FIXTURE, 'utf8'), block);
  });

  it('the fixture translates into an external peer that is skipped for its invalid public key', () => {
    const obj = k8s.loadYaml<{ metadata: { name: string }; spec: unknown }>(readFileSync(FIXTURE, 'utf8'));
    const p = toExternalPeer(obj);
    assert.ok(p);
    assert.deepEqual(p.allowedIPs, ['10.5.0.2/32']);
    assert.equal(p.persistentKeepalive, 25);
    const v = validateExternalPeer(p);
    assert.ok(!v.ok);
    assert.equal(v.skip.reason, 'invalid-public-key');
    assert.match(v.skip.message, /^invalid public key "YOUR_PUBLIC_KEY_HERE"/);
  });
});
