/*
 * Helpers shared by this folder's tests (the server does not use them): a client-node API for a
 * token, the Status body of a failed call narrowed from `unknown`, the Status a test expects
 * spelled out, and polling until a condition holds.
 */
import assert from 'node:assert/strict';
import * as k8s from '@kubernetes/client-node';
import { isObject } from './json.js';
import type { KubeApiServer } from './server.js';

/** A Status body as tests read it: a JSON object whose `reason` and `message`, when present, are strings. */
export type StatusReply = { reason?: string; message?: string; [key: string]: unknown };

/** A CoreV1Api of `server` authenticating with `token`. */
export function coreClient(server: KubeApiServer, token: string): k8s.CoreV1Api {
  const kc = new k8s.KubeConfig();
  kc.loadFromString(JSON.stringify(server.kubeconfig({ token })));
  return kc.makeApiClient(k8s.CoreV1Api);
}

/** The Status body an ApiException carries (JSON text or parsed; {} for none); fails the test if it is not one. */
export function statusOf(body: unknown): StatusReply {
  const v: unknown = typeof body === 'string' ? JSON.parse(body) : (body ?? {});
  const text = (x: unknown) => x === undefined || typeof x === 'string';
  if (!isObject(v) || !text(v.reason) || !text(v.message)) assert.fail(`not a Status body: ${JSON.stringify(v)}`);
  return v as StatusReply;
}

/** The Status body kube-apiserver sends for a failure, spelled out as a test expects it. */
export function failureStatus(
  code: number,
  reason: string,
  message: string,
  details?: unknown,
): Record<string, unknown> {
  const status = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
  return details === undefined ? status : { ...status, details };
}

/** Polls `cond` every 10 ms until it holds; fails the test after `ms`. */
export async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
