/*
 * The little of Kubernetes' protobuf encoding the test API server reads: the `k8s\0` envelope
 * (runtime.Unknown) around a TokenRequest, which `kubectl create token` sends as protobuf (its
 * typed client prefers protobuf for built-in types; it accepts JSON answers).
 */
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import type { JsonObject } from './json.js';

/** The media type of Kubernetes protobuf bodies. */
export const PROTOBUF_MEDIA_TYPE = 'application/vnd.kubernetes.protobuf';

const MAGIC = [0x6b, 0x38, 0x73, 0x00];

/** Reads a message's fields, calling `on[field number]` for the known ones and skipping the rest. */
function readMessage(buf: Uint8Array, on: Record<number, (r: BinaryReader) => void>): void {
  const r = new BinaryReader(buf);
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    const f = on[no];
    if (f && (wt === WireType.LengthDelimited || wt === WireType.Varint)) f(r);
    else r.skip(wt, no);
  }
}

/** Decodes a protobuf-encoded authentication.k8s.io/v1 TokenRequest into its JSON form (apiVersion, kind, spec); throws on anything else. */
export function decodeTokenRequest(body: Uint8Array): JsonObject {
  if (body.length < MAGIC.length || MAGIC.some((b, i) => body[i] !== b))
    throw new Error('not a Kubernetes protobuf body (no k8s\\0 prefix)');
  const typeMeta: JsonObject = {};
  let raw: Uint8Array = new Uint8Array();
  readMessage(body.subarray(MAGIC.length), {
    1: (r) =>
      readMessage(r.bytes(), { 1: (t) => (typeMeta.apiVersion = t.string()), 2: (t) => (typeMeta.kind = t.string()) }),
    2: (r) => (raw = r.bytes()),
  });
  if (typeMeta.kind !== 'TokenRequest') throw new Error(`expected a TokenRequest, got ${String(typeMeta.kind)}`);
  const spec: JsonObject = {};
  readMessage(raw, {
    2: (r) =>
      readMessage(r.bytes(), {
        1: (s) => ((spec.audiences ??= []) as string[]).push(s.string()),
        4: (s) => (spec.expirationSeconds = Number(s.int64())),
        3: (s) => {
          const ref: JsonObject = {};
          readMessage(s.bytes(), {
            1: (b) => (ref.kind = b.string()),
            2: (b) => (ref.apiVersion = b.string()),
            3: (b) => (ref.name = b.string()),
            4: (b) => (ref.uid = b.string()),
          });
          spec.boundObjectRef = ref;
        },
      }),
  });
  return { ...typeMeta, spec };
}
