/**
 * Endpoint failover for one peer, as a pure state machine over what the device reports: the
 * daemon dials a peer's best candidate endpoint; when, for `timeoutMs`, packets go out to it and
 * nothing comes back (WireGuard answers every data packet within 10 s, with a keepalive at
 * least, and every handshake initiation at once), it moves to the next candidate; from a fallback
 * it tries the best one again after `probeAfterMs` (doubling after each failed try), and stays
 * there if it works — so it never flaps between two working endpoints. Sends that fail outright
 * (no route, a firewall's drop on output) leave no trace in the counters: when a peer that had
 * traffic goes quiet for `timeoutMs`, the daemon is asked to nudge it (one small packet through
 * the tunnel); if even that does not go out within `timeoutMs`, the endpoint is left too.
 */
import { isFreshHandshake } from './device.js';

/** What the device says about one peer at one moment. */
export interface PeerReading {
  /** Unix seconds of the latest handshake; 0 = never. */
  latestHandshake: number;
  rxBytes: number;
  txBytes: number;
  /** The endpoint the device uses now (it follows a peer that roamed). */
  endpoint: string | undefined;
}

/** The failover state of one peer. */
export interface FailoverState {
  /** Index of the candidate in use. */
  index: number;
  /** When it came into use (ms). */
  since: number;
  /** The fallback to return to when a try of a better candidate fails; undefined when not trying. */
  tryingFrom?: number | undefined;
  /** When to try the best candidate again (ms), while on a fallback. */
  probeAt?: number | undefined;
  /** The wait before the next try (ms); doubles after each failed one. */
  probeAfterMs: number;
  /** Traffic counters when the current silence began: tx grew and rx did not since then. */
  silentSince?: { at: number; rx: number; tx: number } | undefined;
  /** Since when tx has not grown, after traffic (undefined once a nudge showed the peer idle). */
  quietSince?: number | undefined;
  /** When the first nudge of this quiet spell was asked for, and tx then. */
  nudgedSince?: { at: number; tx: number } | undefined;
  /** A nudge was asked for in the last step (tx growth after it is the nudge's, not traffic). */
  nudged?: boolean | undefined;
  /** The last quiet spell ended with a nudge that went out: no more nudges until traffic. */
  idle?: boolean | undefined;
  /** The last reading. */
  last?: PeerReading | undefined;
  /** Why the last switch happened. */
  why?: string | undefined;
}

/** Timing of the failover. */
export interface FailoverTiming {
  /** Packets out and none in for this long: the endpoint is broken (ms). */
  timeoutMs: number;
  /** On a fallback, try the best candidate again after this long (ms), doubling up to `maxProbeAfterMs`. */
  probeAfterMs: number;
  maxProbeAfterMs: number;
}

/**
 * Why a switch happened, in one word (the metrics count switches by it): no answer while packets
 * went out, nothing could be sent, a try of the best candidate, or back from a try that failed.
 */
export type SwitchReason = 'no-answer' | 'send-failed' | 'probe' | 'probe-failed';

/** The outcome of one step: the new state, the candidate to switch to (with why) if any, and whether to nudge the peer. */
export interface FailoverStep {
  state: FailoverState;
  switchTo?: { index: number; why: string; reason: SwitchReason } | undefined;
  /** Send the peer one packet through the tunnel now: its endpoint is being checked. */
  nudge?: boolean | undefined;
}

/** A new peer starts on its best candidate. */
export function initialState(now: number, timing: FailoverTiming): FailoverState {
  return { index: 0, since: now, probeAfterMs: timing.probeAfterMs };
}

/** What one failover step takes besides the peer's state. */
export interface FailoverInput {
  /** How many candidates the peer has, in order of preference. */
  count: number;
  /** What the device says about the peer now. */
  reading: PeerReading;
  /** The time (ms). */
  now: number;
  timing: FailoverTiming;
}

/**
 * One step for one peer with `count` candidates (in order of preference), given a new reading.
 * A candidate is broken when tx grew and rx did not for `timeoutMs` while it was in use.
 */
export function failoverStep(state: FailoverState, input: FailoverInput): FailoverStep {
  const { count, reading, now, timing } = input;
  const s: FailoverState = { ...state, last: reading };
  if (count <= 1)
    return { state: { ...s, index: 0, tryingFrom: undefined, probeAt: undefined, silentSince: undefined } };
  const prev = state.last;
  // Silence: packets go out and none come in. Any reply ends it.
  if (prev && reading.rxBytes > prev.rxBytes) s.silentSince = undefined;
  else if (prev && reading.txBytes > prev.txBytes && !s.silentSince)
    s.silentSince = { at: now, rx: prev.rxBytes, tx: prev.txBytes };
  const nudge = trackQuiet(s, prev, input);
  const silent = !!s.silentSince && now - s.silentSince.at >= timing.timeoutMs;
  const unsendable = !!s.nudgedSince && now - s.nudgedSince.at >= timing.timeoutMs;
  const broken = (silent || unsendable) && now - s.since >= timing.timeoutMs;
  if (broken) {
    const trying = s.tryingFrom;
    const next = trying !== undefined ? trying : (s.index + 1) % count;
    const probeAfterMs = trying !== undefined ? Math.min(timing.maxProbeAfterMs, s.probeAfterMs * 2) : s.probeAfterMs;
    const why =
      trying !== undefined
        ? `the better endpoint did not answer for ${Math.round(timing.timeoutMs / 1000)} s: back to the one that worked, ` +
          `next try in ${Math.round(probeAfterMs / 1000)} s`
        : silent
          ? `no answer for ${Math.round((now - s.silentSince!.at) / 1000)} s while packets went out`
          : `nothing could be sent to it for ${Math.round((now - s.nudgedSince!.at) / 1000)} s (no route, or dropped on the way out)`;
    const reason: SwitchReason = trying !== undefined ? 'probe-failed' : silent ? 'no-answer' : 'send-failed';
    return switched(s, { index: next, now, why, reason, probeAfterMs });
  }
  if (s.tryingFrom !== undefined && prev && reading.rxBytes > prev.rxBytes) {
    // The better candidate answered: it stays, and the tries start over.
    return { state: { ...s, tryingFrom: undefined, probeAt: undefined, probeAfterMs: timing.probeAfterMs } };
  }
  if (s.index > 0 && s.tryingFrom === undefined && s.probeAt !== undefined && now >= s.probeAt) {
    const why = 'trying the better endpoint again';
    const step = switched(s, { index: 0, now, why, reason: 'probe', probeAfterMs: s.probeAfterMs });
    return { ...step, state: { ...step.state, tryingFrom: s.index } };
  }
  return nudge ? { state: s, nudge } : { state: s };
}

/**
 * Follows quiet spells (tx flat) in `s`; true when the peer should be nudged: it has a live session
 * and has been quiet for the timeout, and no nudge has gone out yet since its last traffic.
 */
function trackQuiet(s: FailoverState, prev: PeerReading | undefined, input: FailoverInput): boolean {
  const { reading, now, timing } = input;
  const nudgedBefore = s.nudged;
  s.nudged = undefined;
  if (!prev) return false;
  if (reading.txBytes > prev.txBytes) {
    // Growth right after a nudge is the nudge going out: the peer is idle, not broken.
    s.idle = nudgedBefore === true && s.nudgedSince !== undefined;
    s.quietSince = undefined;
    s.nudgedSince = undefined;
    return false;
  }
  // Only a peer with a live session (a fresh handshake) is nudged: one that never
  // answered, or went away long ago, is left alone rather than rotated through its endpoints.
  const live = isFreshHandshake(reading.latestHandshake, now);
  if (s.idle || (!live && s.nudgedSince === undefined)) return false;
  s.quietSince ??= now;
  if (now - s.quietSince < timing.timeoutMs) return false;
  s.nudgedSince ??= { at: now, tx: reading.txBytes };
  s.nudged = true;
  return true;
}

/** The state after moving to candidate `index` (on a fallback, a try of the best one is planned). */
function switched(
  s: FailoverState,
  to: { index: number; now: number; why: string; reason: SwitchReason; probeAfterMs: number },
): FailoverStep {
  const { index, now, why, reason, probeAfterMs } = to;
  const state: FailoverState = {
    ...s,
    index,
    since: now,
    tryingFrom: undefined,
    silentSince: undefined,
    quietSince: undefined,
    nudgedSince: undefined,
    nudged: undefined,
    idle: undefined,
    why,
    probeAfterMs,
    probeAt: index > 0 ? now + probeAfterMs : undefined,
  };
  return { state, switchTo: { index, why, reason } };
}
