/**
 * Overlay addresses kept up to date one Node at a time, with the same outcome as
 * `assignOverlayAddresses` over the whole list: a published claim is honoured for the most senior
 * Node making it, and the Nodes left without one get their candidate (or the next free address)
 * in a pass that only ever involves those Nodes — a handful while nodes join, none at rest.
 */
import { assignCandidates, candidateOffset, claimProblem, offsetText, parseClaim } from './addresses.js';
import { compareSeniority, lowerBound } from './order.js';
import type { MeshNode, SkipReason } from '../types.js';
import type { Cidr } from '../../net/ip.js';

/** Inserts into a list kept in seniority order. */
function insertSenior(list: MeshNode[], node: MeshNode): void {
  list.splice(
    lowerBound(list, (n) => compareSeniority(n, node) < 0),
    0,
    node,
  );
}

/** Every Node's overlay address and address problems, updated incrementally. */
export class AddressBook {
  private readonly nodes = new Map<string, MeshNode>();
  private readonly claims = new Map<string, { offset?: bigint; why?: string }>();
  /** Valid claims by offset, claimants oldest first (the first holds it). */
  private readonly claimants = new Map<bigint, MeshNode[]>();
  /** Nodes holding no claim, oldest first (they get candidates). */
  private readonly unassigned: MeshNode[] = [];
  private readonly held = new Map<bigint, string>();
  private fromCandidates = new Map<string, bigint>();
  private candidateProblems = new Map<string, SkipReason>();
  /** Each Node's candidate offset, computed once per Node object (it parses its addresses). */
  private readonly starts = new WeakMap<MeshNode, bigint>();
  /** Names touched by deferred updates, for `flush()`. */
  private pending = new Set<string>();
  /** Every Node's address. */
  readonly addresses = new Map<string, string>();

  /** `annotation`: where Nodes publish their claims in this overlay. */
  constructor(
    private readonly overlay: Cidr,
    private readonly annotation?: string,
  ) {}

  /** A Node's problems with its address (unhonoured claim, exhaustion). */
  problems(name: string): SkipReason[] {
    const out: SkipReason[] = [];
    const claim = this.claims.get(name);
    if (claim?.why) out.push(claimProblem(name, claim.why, false));
    else if (claim?.offset !== undefined && this.held.get(claim.offset) !== name) {
      out.push(
        claimProblem(
          name,
          `published overlay address "${offsetText(this.overlay, claim.offset)}" is held by older node ${this.held.get(claim.offset)}`,
          true,
        ),
      );
    }
    const exhausted = this.candidateProblems.get(name);
    if (exhausted) out.push(exhausted);
    return out;
  }

  /**
   * Adds, changes (`node`) or removes (`name` only) a Node; returns the names whose address or
   * problems may have changed. With `defer`, the candidate pass waits for `flush()` (a re-list
   * updates every Node first and runs that pass once).
   */
  update(name: string, node: MeshNode | undefined, defer = false): Set<string> {
    const touched = new Set<string>([name]);
    const old = this.nodes.get(name);
    // A change that keeps the Node's claim, seniority and candidate (a PodCIDR, a key, an
    // endpoint) leaves the candidate pass's input as it was: its output stands.
    const claim = node && parseClaim(node, this.overlay, this.annotation);
    const passUnchanged =
      old !== undefined &&
      node !== undefined &&
      this.claims.get(name)?.offset === claim!.offset &&
      old.createdAt === node.createdAt &&
      this.startOf(old) === this.startOf(node);
    if (old) this.drop(old, touched);
    if (node) this.put(node, claim!, touched);
    if (defer) for (const n of touched) this.pending.add(n);
    else this.reassignCandidates(touched, !passUnchanged);
    return touched;
  }

  /** Runs the candidate pass deferred by `update(…, true)`; returns the names it changed. */
  flush(): Set<string> {
    const touched = this.pending;
    this.pending = new Set();
    if (touched.size > 0) this.reassignCandidates(touched);
    return touched;
  }

  private drop(node: MeshNode, touched: Set<string>): void {
    this.nodes.delete(node.name);
    const claim = this.claims.get(node.name);
    this.claims.delete(node.name);
    if (claim?.offset !== undefined) this.release(claim.offset, node, touched);
    const i = this.unassigned.indexOf(node);
    if (i >= 0) this.unassigned.splice(i, 1);
  }

  private put(node: MeshNode, claim: { offset?: bigint; why?: string }, touched: Set<string>): void {
    this.nodes.set(node.name, node);
    this.claims.set(node.name, claim);
    if (claim.offset === undefined) {
      insertSenior(this.unassigned, node);
      return;
    }
    const list = this.claimants.get(claim.offset) ?? [];
    this.claimants.set(claim.offset, list);
    const before = list[0];
    insertSenior(list, node);
    if (list[0] === node) {
      if (before) this.loses(before, touched);
      this.held.set(claim.offset, node.name);
    } else {
      insertSenior(this.unassigned, node);
    }
    for (const n of list) touched.add(n.name);
  }

  /** A claim goes away: the next claimant, if any, takes the address over. */
  private release(offset: bigint, node: MeshNode, touched: Set<string>): void {
    const list = this.claimants.get(offset)!;
    const wasHolder = list[0] === node;
    list.splice(list.indexOf(node), 1);
    for (const n of list) touched.add(n.name);
    if (!wasHolder) return;
    const next = list[0];
    if (!next) {
      this.claimants.delete(offset);
      this.held.delete(offset);
      return;
    }
    this.held.set(offset, next.name);
    this.unassigned.splice(this.unassigned.indexOf(next), 1);
  }

  private loses(node: MeshNode, touched: Set<string>): void {
    touched.add(node.name);
    insertSenior(this.unassigned, node);
  }

  /**
   * Pass 2 over the Nodes holding no claim (when `pass`: its input changed), then the addresses
   * of everyone touched. Only Nodes whose candidate address or exhaustion changed are added to
   * `touched`: while thousands of Nodes publish no claim in this overlay (older daemons, before
   * they upgrade), a join or a leave costs one cheap pass and a PodCIDR change none, not a verdict
   * for each of them.
   */
  private reassignCandidates(touched: Set<string>, pass = true): void {
    if (pass) this.candidatePass(touched);
    for (const name of touched) {
      const claim = this.claims.get(name);
      const offset =
        claim?.offset !== undefined && this.held.get(claim.offset) === name
          ? claim.offset
          : this.fromCandidates.get(name);
      if (offset === undefined) this.addresses.delete(name);
      else this.addresses.set(name, offsetText(this.overlay, offset));
    }
  }

  private startOf(node: MeshNode): bigint {
    let start = this.starts.get(node);
    if (start === undefined) this.starts.set(node, (start = candidateOffset(node, this.overlay)));
    return start;
  }

  /** Runs pass 2 and adds the Nodes whose candidate address or exhaustion changed to `touched`. */
  private candidatePass(touched: Set<string>): void {
    const extra = new Map<bigint, string>();
    const held = {
      has: (o: bigint) => this.held.has(o) || extra.has(o),
      set: (o: bigint, n: string) => extra.set(o, n),
    };
    const { assigned, problems } = assignCandidates({
      unassigned: this.unassigned,
      overlay: this.overlay,
      held,
      total: this.nodes.size,
      startOf: (node) => this.startOf(node),
    });
    const nextProblems = new Map(problems.map((p) => [p.name, p]));
    for (const [name, offset] of this.fromCandidates) if (assigned.get(name) !== offset) touched.add(name);
    for (const [name, offset] of assigned) if (this.fromCandidates.get(name) !== offset) touched.add(name);
    for (const name of this.candidateProblems.keys()) if (!nextProblems.has(name)) touched.add(name);
    for (const [name, p] of nextProblems)
      if (this.candidateProblems.get(name)?.message !== p.message) touched.add(name);
    this.fromCandidates = assigned;
    this.candidateProblems = nextProblems;
  }
}
