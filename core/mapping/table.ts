import { MAX_PINHOLE_ID, pinholeRuleOf, pinholeRuleString, samePinholeRule, type Pinhole, type PinholeRule, type PinholeView } from './pinhole.js';
import type { MappingChanges } from './state-file.js';
import {
  keyString,
  ownString,
  ruleOf,
  sameRule,
  type ChangeSet,
  type MappingKey,
  type MappingView,
  type PortMapping,
  type Protocol,
  type RuleSpec,
} from './types.js';

/**
 * The mappings, in a stable order (the order GetGenericPortMappingEntry indexes). Lookup by key
 * and by index are O(1); a replace keeps its index; a removal shifts later entries down by one.
 */
export class MappingTable implements MappingView {
  private readonly byKey = new Map<string, PortMapping>();
  private ordered: PortMapping[] = [];
  /** How many mappings each client (creator's address) holds: what quotas count, without a walk. */
  private readonly held = new Map<string, number>();
  /** IPv6 pinholes by UniqueID, in the order they were opened (changed by `commit` only, with the index below). */
  private readonly pinholesById = new Map<number, Pinhole>();
  /** Pinhole rule (`pinholeRuleString`) → UniqueID: a renewal finds its pinhole without parsing every address in the table. */
  private readonly pinholeIdByRule = new Map<string, number>();
  /** `protocol/port` → keys of the mappings on that port restricted to one remote host (rare: most are for any host). */
  private readonly restrictedByPort = new Map<string, Set<string>>();
  /** Internal client → keys of its mappings, in table order (a renewal keeps its place, a re-insertion goes last). */
  private readonly byClient = new Map<string, Set<string>>();

  get size(): number {
    return this.ordered.length;
  }

  get pinholes(): ReadonlyMap<number, Pinhole> {
    return this.pinholesById;
  }

  get(key: MappingKey): PortMapping | undefined {
    return this.byKey.get(keyString(key));
  }

  at(index: number): PortMapping | undefined {
    return Number.isInteger(index) && index >= 0 ? this.ordered[index] : undefined;
  }

  values(): IterableIterator<PortMapping> {
    return this.ordered.values();
  }

  heldBy(address: string): number {
    return this.held.get(address) ?? 0;
  }

  /** The pinhole with this rule (addresses compared in canonical form), if any. */
  pinholeWithRule(rule: PinholeRule): Pinhole | undefined {
    const id = this.pinholeIdByRule.get(pinholeRuleString(rule));
    return id === undefined ? undefined : this.pinholes.get(id);
  }

  *ofClient(internalClient: string): IterableIterator<PortMapping> {
    for (const k of this.byClient.get(internalClient) ?? []) yield this.byKey.get(k)!;
  }

  /**
   * What the firewall must hold: the rules of the enabled mappings, and the pinholes' rules. Each is
   * the same array until the next commit, so that a periodic check of an unchanged table makes no
   * copies (5000 of them every few seconds were garbage that V8 kept for a while) and a backend can
   * tell "unchanged" by identity (sameRecords).
   */
  enabledRules(): readonly RuleSpec[] {
    return (this.enabledRulesOnce ??= Object.freeze(this.ordered.filter((m) => m.enabled).map(ruleOf)));
  }

  pinholeRules(): readonly PinholeRule[] {
    return (this.pinholeRulesOnce ??= Object.freeze([...this.pinholesById.values()].map(pinholeRuleOf)));
  }

  private enabledRulesOnce: readonly RuleSpec[] | undefined;
  private pinholeRulesOnce: readonly PinholeRule[] | undefined;

  /** Inserts (at the end) or replaces (in place) several mappings and removes others, as one step. */
  commit(upserts: Iterable<PortMapping>, removals: Iterable<string>, pinholes: ReadonlyMap<number, Pinhole | null> = new Map()): void {
    this.enabledRulesOnce = undefined;
    this.pinholeRulesOnce = undefined;
    for (const [id, pinhole] of pinholes) {
      const before = this.pinholesById.get(id);
      // Unless another pinhole of this change took the rule already (closed here, opened under another UniqueID).
      if (before && this.pinholeIdByRule.get(pinholeRuleString(before)) === id) this.pinholeIdByRule.delete(pinholeRuleString(before));
      if (pinhole) {
        this.pinholesById.set(id, pinhole);
        // Flat: built as a template, the rule's text is a tree of a dozen pieces (300 bytes).
        this.pinholeIdByRule.set(ownString(pinholeRuleString(pinhole)), id);
      } else {
        this.pinholesById.delete(id);
      }
    }
    // By identity: building every mapping's key to filter a 5000-entry table cost more than the rest of a delete.
    const removed = new Set<PortMapping>();
    for (const k of removals) {
      const previous = this.byKey.get(k);
      if (!previous) continue;
      this.byKey.delete(k);
      removed.add(previous);
      countHeld(this.held, previous, -1);
      this.unindex(previous, k);
    }
    if (removed.size > 0) this.ordered = this.ordered.filter((m) => !removed.has(m));
    for (const mapping of upserts) {
      const k = keyString(mapping);
      const previous = this.byKey.get(k);
      this.byKey.set(k, mapping);
      if (previous) this.ordered[this.ordered.indexOf(previous)] = mapping;
      else this.ordered.push(mapping);
      if (previous) countHeld(this.held, previous, -1);
      countHeld(this.held, mapping, 1);
      if (previous && previous.internalClient !== mapping.internalClient) {
        // Taken over in place (the lifecycle answers 718 instead, but the table allows it): the new
        // client's index is rebuilt, so that it keeps table order with this mapping at its old place.
        this.dropFromClient(previous.internalClient, k);
        this.index(mapping, k);
        this.reindexClient(mapping.internalClient);
      } else {
        this.index(mapping, k);
      }
    }
  }

  private reindexClient(internalClient: string): void {
    this.byClient.set(internalClient, new Set(this.ordered.filter((m) => m.internalClient === internalClient).map((m) => keyString(m))));
  }

  /** Keys of the mappings on `protocol` `port` that are restricted to one remote host. */
  restrictedOn(protocol: Protocol, port: number): Iterable<string> {
    return this.restrictedByPort.get(`${protocol}/${port}`) ?? [];
  }

  private index(mapping: PortMapping, k: string): void {
    const own = this.byClient.get(mapping.internalClient) ?? new Set<string>();
    this.byClient.set(mapping.internalClient, own.add(k));
    if (mapping.remoteHost === '') return;
    const port = `${mapping.protocol}/${mapping.externalPort}`;
    const keys = this.restrictedByPort.get(port) ?? new Set<string>();
    this.restrictedByPort.set(port, keys.add(k));
  }

  private unindex(mapping: PortMapping, k: string): void {
    this.dropFromClient(mapping.internalClient, k);
    const port = `${mapping.protocol}/${mapping.externalPort}`;
    const keys = this.restrictedByPort.get(port);
    if (keys?.delete(k) && keys.size === 0) this.restrictedByPort.delete(port);
  }

  private dropFromClient(internalClient: string, k: string): void {
    const own = this.byClient.get(internalClient);
    if (own?.delete(k) && own.size === 0) this.byClient.delete(internalClient);
  }
}

/** Adds `by` to the count of mappings `mapping`'s creator holds; a count that reaches 0 is dropped. */
function countHeld(counts: Map<string, number>, mapping: PortMapping, by: number): void {
  const address = mapping.createdBy.address;
  const count = (counts.get(address) ?? 0) + by;
  if (count === 0) counts.delete(address);
  else counts.set(address, count);
}

/**
 * Staged changes on top of a table: what one batch of requests would do. Reads see the staged
 * state; nothing reaches the table until `commit`. `changeSet` derives the firewall work from the
 * difference, so a renewal that changes only the lease or description costs no firewall call.
 */
export class MappingDraft implements MappingView {
  /** keyString → staged mapping, or null for a staged removal. Insertion order is kept. */
  private readonly staged = new Map<string, PortMapping | null>();
  /** Keys removed and then added again in this draft: they move to the end, as if done in sequence. */
  private readonly reinserted = new Set<string>();
  /** UniqueID → staged pinhole, or null for a staged removal (few: copied whole at a savepoint). */
  private stagedPinholes = new Map<number, Pinhole | null>();
  /**
   * What the table holds under each key ever staged, and which key each of those table entries
   * has: the table does not change while a draft is open, so each is looked up once, not at every
   * `size` or `values()` (policies read both for each request of a batch: a restore of 5000
   * mappings in one batch spent seconds building and parsing keys).
   */
  private readonly original = new Map<string, PortMapping | undefined>();
  private readonly stagedKeyOf = new Map<PortMapping, string>();
  /**
   * Kept up to date at each put and remove, so that `size` and `heldBy` cost O(1) (policies read
   * them for each request: a restore of 5000 mappings in one batch was quadratic).
   */
  private sizeChange = 0;
  private readonly heldChange = new Map<string, number>();
  /** The mapping put last for each internal client (see siblingOf). */
  private readonly lastPutOf = new Map<string, PortMapping>();
  /**
   * What each put or remove replaced, newest last: a savepoint is a length of this log, and a
   * rollback undoes back to it (copying the staged changes at each savepoint was quadratic too).
   */
  private readonly undo: UndoEntry[] = [];

  /** The pinholes as they stand in this draft. */
  readonly pinholes: PinholeView;

  constructor(private readonly table: MappingTable) {
    this.pinholes = new DraftPinholes(table.pinholes, () => this.stagedPinholes);
  }

  /** The pinhole with this rule as it stands in this draft: one staged in it, or the table's unless the draft changed that one. */
  pinholeWithRule(rule: PinholeRule): Pinhole | undefined {
    const wanted = pinholeRuleString(rule);
    for (const p of this.stagedPinholes.values()) if (p && pinholeRuleString(p) === wanted) return p;
    const committed = this.table.pinholeWithRule(rule);
    return committed && !this.stagedPinholes.has(committed.id) ? committed : undefined;
  }

  putPinhole(pinhole: Pinhole): void {
    this.stagedPinholes.set(pinhole.id, pinhole);
  }

  removePinhole(id: number): void {
    this.stagedPinholes.set(id, null);
  }

  /** A UniqueID no pinhole of the table or of this draft holds, the lowest above `after` (wrapping); undefined when all are taken. */
  freePinholeId(after: number): number | undefined {
    for (let i = 1; i <= MAX_PINHOLE_ID; i++) {
      const id = ((after + i - 1) % MAX_PINHOLE_ID) + 1;
      if (this.pinholes.get(id) === undefined && !this.stagedPinholes.has(id)) return id;
    }
    return undefined;
  }

  get(key: MappingKey): PortMapping | undefined {
    return this.visible(keyString(key), key);
  }

  /**
   * Every mapping of `protocol` `port` as the draft stands, whatever its remote host: the one for
   * any host and those restricted to one. A port belongs to one client however it is restricted.
   */
  holdersOf(protocol: Protocol, port: number): PortMapping[] {
    const keys = new Set([keyString({ remoteHost: '', externalPort: port, protocol }), ...this.table.restrictedOn(protocol, port)]);
    for (const [k, m] of this.staged) if (m && m.protocol === protocol && m.externalPort === port) keys.add(k);
    return [...keys].flatMap((k) => this.get(keyFromString(k)) ?? []);
  }

  get size(): number {
    return this.table.size + this.sizeChange;
  }

  heldBy(address: string): number {
    return this.table.heldBy(address) + (this.heldChange.get(address) ?? 0);
  }

  /** What `values()` shows of one internal client, in the same order, from the table's index and the staged changes. */
  *ofClient(internalClient: string): IterableIterator<PortMapping> {
    // A mapping another client's was replaced by in place keeps that one's place in the order, which
    // this client's index cannot know: walk then (the lifecycle never stages that: it answers 718).
    for (const [k, m] of this.staged) {
      const original = this.original.get(k);
      if (m?.internalClient === internalClient && original && original.internalClient !== internalClient && !this.reinserted.has(k)) {
        for (const shown of this.values()) if (shown.internalClient === internalClient) yield shown;
        return;
      }
    }
    for (const m of this.table.ofClient(internalClient)) {
      const k = this.stagedKeyOf.get(m);
      if (k === undefined || !this.staged.has(k)) yield m;
      else {
        const staged = this.staged.get(k);
        if (staged && !this.reinserted.has(k) && staged.internalClient === internalClient) yield staged;
      }
    }
    for (const [k, m] of this.staged) if (m?.internalClient === internalClient && (this.reinserted.has(k) || this.original.get(k) === undefined)) yield m;
  }

  *values(): IterableIterator<PortMapping> {
    for (const m of this.table.values()) {
      const k = this.stagedKeyOf.get(m);
      if (k === undefined || !this.staged.has(k)) yield m;
      else if (this.staged.get(k) && !this.reinserted.has(k)) yield this.staged.get(k)!;
    }
    for (const [k, m] of this.staged) if (m && (this.reinserted.has(k) || this.original.get(k) === undefined)) yield m;
  }

  /**
   * A mapping to `internalClient`, staged in this draft or held by the table, for a new mapping of
   * that client to share strings with (portMappingOf). It may be one this draft removed or rolled
   * back: only its values are read.
   */
  siblingOf(internalClient: string): PortMapping | undefined {
    const staged = this.lastPutOf.get(internalClient);
    if (staged) return staged;
    for (const held of this.table.ofClient(internalClient)) return held;
    return undefined;
  }

  put(mapping: PortMapping): void {
    this.lastPutOf.set(mapping.internalClient, mapping);
    const k = keyString(mapping);
    const before = this.stage(k, mapping);
    if (this.staged.get(k) === null) {
      // Removed earlier in this draft: added again, it goes to the end (a Map keeps a re-set key in
      // place). Where it stood is noted, so that a rollback puts it back there (rare: O(staged)).
      const position = [...this.staged.keys()].indexOf(k);
      this.undo[this.undo.length - 1] = { ...this.undo.at(-1)!, position };
      this.staged.delete(k);
      if (this.original.get(k)) this.reinserted.add(k);
    }
    this.staged.set(k, mapping);
    this.counted(before, mapping);
  }

  remove(key: MappingKey): void {
    const k = keyString(key);
    const before = this.stage(k, key);
    this.staged.set(k, null);
    this.counted(before, undefined);
  }

  savepoint(): DraftSavepoint {
    return { undoLength: this.undo.length, pinholes: new Map(this.stagedPinholes) };
  }

  /** Undoes every put and remove since `savepoint` was taken (newest first). */
  rollbackTo(savepoint: DraftSavepoint): void {
    while (this.undo.length > savepoint.undoLength) {
      const { k, staged, reinserted, position } = this.undo.pop()!;
      const now = this.staged.get(k) ?? undefined;
      if (staged === undefined) this.staged.delete(k);
      else if (position !== undefined) this.restageAt(k, staged, position);
      else this.staged.set(k, staged);
      if (reinserted) this.reinserted.add(k);
      else this.reinserted.delete(k);
      this.counted(now, this.visible(k));
    }
    this.stagedPinholes = new Map(savepoint.pinholes);
  }

  /** Stages `k` at `position` in the staged order (undoing a put that moved it to the end). */
  private restageAt(k: string, staged: PortMapping | null, position: number): void {
    const entries = [...this.staged].filter(([key]) => key !== k);
    entries.splice(position, 0, [k, staged]);
    this.staged.clear();
    for (const [key, m] of entries) this.staged.set(key, m);
  }

  /** The mapping the draft shows under `k`: the staged one, else the table's. */
  private visible(k: string, key: MappingKey = keyFromString(k)): PortMapping | undefined {
    if (this.staged.has(k)) return this.staged.get(k) ?? undefined;
    return this.table.get(key);
  }

  /**
   * Before a put or remove of `k`: notes what the table holds under it (the first time), and what
   * the draft holds now in the undo log. Returns the mapping the draft showed under `k`.
   */
  private stage(k: string, key: MappingKey): PortMapping | undefined {
    if (!this.original.has(k)) {
      const inTable = this.table.get(key);
      this.original.set(k, inTable);
      if (inTable) this.stagedKeyOf.set(inTable, k);
    }
    const staged = this.staged.has(k) ? this.staged.get(k)! : undefined;
    this.undo.push({ k, staged, reinserted: this.reinserted.has(k) });
    return staged === undefined ? this.original.get(k) : (staged ?? undefined);
  }

  /** Counts the draft's showing `after` where it showed `before` (under one key). */
  private counted(before: PortMapping | undefined, after: PortMapping | undefined): void {
    this.sizeChange += (after ? 1 : 0) - (before ? 1 : 0);
    if (before) countHeld(this.heldChange, before, -1);
    if (after) countHeld(this.heldChange, after, 1);
  }

  hasChanges(): boolean {
    return this.staged.size > 0 || this.stagedPinholes.size > 0;
  }

  changeSet(): ChangeSet {
    const remove: RuleSpec[] = [];
    const add: RuleSpec[] = [];
    for (const [k, after] of this.staged) {
      const before = this.table.get(keyFromString(k));
      const beforeRule = before && before.enabled ? ruleOf(before) : undefined;
      const afterRule = after && after.enabled ? ruleOf(after) : undefined;
      if (beforeRule && afterRule && sameRule(beforeRule, afterRule)) continue;
      if (beforeRule) remove.push(beforeRule);
      if (afterRule) add.push(afterRule);
    }
    const pinholes = this.pinholeChanges();
    return pinholes.remove.length + pinholes.add.length > 0 ? { remove, add, pinholes } : { remove, add };
  }

  private pinholeChanges(): { remove: PinholeRule[]; add: PinholeRule[] } {
    const remove: PinholeRule[] = [];
    const add: PinholeRule[] = [];
    for (const [id, after] of this.stagedPinholes) {
      const before = this.table.pinholes.get(id);
      if (before && after && samePinholeRule(before, after)) continue;
      if (before) remove.push(pinholeRuleOf(before));
      if (after) add.push(pinholeRuleOf(after));
    }
    return { remove, add };
  }

  /** What `commit` will do to the table, as the journal records it: removals first, then mappings set. */
  changes(): MappingChanges {
    const mapped: PortMapping[] = [];
    const unmapped: MappingKey[] = [];
    for (const [k, m] of this.staged) {
      if (!m || this.reinserted.has(k)) unmapped.push(keyFromString(k));
      if (m) mapped.push(m);
    }
    if (this.stagedPinholes.size === 0) return { mapped, unmapped };
    const pinholes = [...this.stagedPinholes.values()].filter((p): p is Pinhole => p !== null);
    const closedPinholes = [...this.stagedPinholes].filter(([, p]) => p === null).map(([id]) => id);
    return { mapped, unmapped, pinholes, closedPinholes };
  }

  /** Whether this draft adds a mapping the table does not hold, or points a key at another target (what a full disk may refuse). */
  addsMappings(): boolean {
    for (const [k, m] of this.staged) {
      if (!m) continue;
      const before = this.table.get(keyFromString(k));
      if (!before || !sameRule(ruleOf(before), ruleOf(m))) return true;
    }
    for (const [id, p] of this.stagedPinholes) {
      const before = this.table.pinholes.get(id);
      if (p && !(before && samePinholeRule(before, p))) return true;
    }
    return false;
  }

  commit(): void {
    const upserts: PortMapping[] = [];
    const removals: string[] = [];
    for (const [k, m] of this.staged) {
      if (m) upserts.push(m);
      if (!m || this.reinserted.has(k)) removals.push(k);
    }
    this.table.commit(upserts, removals, this.stagedPinholes);
    this.staged.clear();
    this.reinserted.clear();
    this.stagedPinholes.clear();
    this.original.clear();
    this.stagedKeyOf.clear();
    this.lastPutOf.clear();
    this.sizeChange = 0;
    this.heldChange.clear();
    this.undo.length = 0;
  }
}

/** A point in a draft's changes to roll back to (the length of its undo log then). */
export interface DraftSavepoint {
  readonly undoLength: number;
  readonly pinholes: ReadonlyMap<number, Pinhole | null>;
}

/** What a key showed in the draft before a put or remove: its staged value (undefined: none staged) and whether it was reinserted. */
interface UndoEntry {
  readonly k: string;
  readonly staged: PortMapping | null | undefined;
  readonly reinserted: boolean;
  /** Where `k` stood in the staged order when a put moved it to the end. */
  readonly position?: number;
}

function keyFromString(k: string): MappingKey {
  const first = k.indexOf('/');
  const second = k.indexOf('/', first + 1);
  return {
    protocol: k.slice(0, first) as MappingKey['protocol'],
    externalPort: Number(k.slice(first + 1, second)),
    remoteHost: k.slice(second + 1),
  };
}

/** A draft's pinholes: the table's, with the draft's staged changes (null: closed) over them. */
class DraftPinholes implements PinholeView {
  constructor(
    private readonly committed: ReadonlyMap<number, Pinhole>,
    private readonly staged: () => ReadonlyMap<number, Pinhole | null>,
  ) {}

  get(id: number): Pinhole | undefined {
    const staged = this.staged();
    return staged.has(id) ? (staged.get(id) ?? undefined) : this.committed.get(id);
  }

  *values(): IterableIterator<Pinhole> {
    const staged = this.staged();
    for (const [id, p] of this.committed) if (!staged.has(id)) yield p;
    for (const p of staged.values()) if (p) yield p;
  }

  /** Counted from the staged changes alone (a quota asks for it on every request). */
  get size(): number {
    let size = this.committed.size;
    for (const [id, p] of this.staged()) size += (p ? 1 : 0) - (this.committed.has(id) ? 1 : 0);
    return size;
  }
}
