import type { MappingChanges } from './state-file.js';
import { keyString, ruleOf, sameRule, type ChangeSet, type MappingKey, type MappingView, type PortMapping, type RuleSpec } from './types.js';

/**
 * The mappings, in a stable order (the order GetGenericPortMappingEntry indexes). Lookup by key
 * and by index are O(1); a replace keeps its index; a removal shifts later entries down by one.
 */
export class MappingTable implements MappingView {
  private readonly byKey = new Map<string, PortMapping>();
  private ordered: PortMapping[] = [];

  get size(): number {
    return this.ordered.length;
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

  /** Inserts (at the end) or replaces (in place) several mappings and removes others, as one step. */
  commit(upserts: Iterable<PortMapping>, removals: Iterable<string>): void {
    const removed = new Set<string>();
    for (const k of removals) {
      if (this.byKey.delete(k)) removed.add(k);
    }
    if (removed.size > 0) this.ordered = this.ordered.filter((m) => !removed.has(keyString(m)));
    for (const mapping of upserts) {
      const k = keyString(mapping);
      const previous = this.byKey.get(k);
      this.byKey.set(k, mapping);
      if (previous) this.ordered[this.ordered.indexOf(previous)] = mapping;
      else this.ordered.push(mapping);
    }
  }
}

/**
 * Staged changes on top of a table: what one batch of requests would do. Reads see the staged
 * state; nothing reaches the table until `commit`. `changeSet` derives the firewall work from the
 * difference, so a renewal that changes only the lease or description costs no firewall call.
 */
export class MappingDraft implements MappingView {
  /** keyString → staged mapping, or null for a staged removal. Insertion order is kept. */
  private staged = new Map<string, PortMapping | null>();
  /** Keys removed and then added again in this draft: they move to the end, as if done in sequence. */
  private reinserted = new Set<string>();
  /**
   * What the table holds under each key ever staged, and which key each of those table entries
   * has: the table does not change while a draft is open, so each is looked up once, not at every
   * `size` or `values()` (policies read both for each request of a batch: a restore of 5000
   * mappings in one batch spent seconds building and parsing keys).
   */
  private readonly original = new Map<string, PortMapping | undefined>();
  private readonly stagedKeyOf = new Map<PortMapping, string>();
  private cachedSize: number | undefined;

  constructor(private readonly table: MappingTable) {}

  get(key: MappingKey): PortMapping | undefined {
    const k = keyString(key);
    if (this.staged.has(k)) return this.staged.get(k) ?? undefined;
    return this.table.get(key);
  }

  get size(): number {
    if (this.cachedSize !== undefined) return this.cachedSize;
    let size = this.table.size;
    for (const [k, m] of this.staged) {
      const inTable = this.original.get(k) !== undefined;
      if (m && !inTable) size++;
      if (!m && inTable) size--;
    }
    return (this.cachedSize = size);
  }

  *values(): IterableIterator<PortMapping> {
    for (const m of this.table.values()) {
      const k = this.stagedKeyOf.get(m);
      if (k === undefined || !this.staged.has(k)) yield m;
      else if (this.staged.get(k) && !this.reinserted.has(k)) yield this.staged.get(k)!;
    }
    for (const [k, m] of this.staged) if (m && (this.reinserted.has(k) || this.original.get(k) === undefined)) yield m;
  }

  /** Notes what the table holds under `k` (the first time `k` is staged) and that the draft changes. */
  private staging(k: string, key: MappingKey): void {
    this.cachedSize = undefined;
    if (this.original.has(k)) return;
    const before = this.table.get(key);
    this.original.set(k, before);
    if (before) this.stagedKeyOf.set(before, k);
  }

  put(mapping: PortMapping): void {
    const k = keyString(mapping);
    this.staging(k, mapping);
    if (this.staged.get(k) === null) {
      // Removed earlier in this draft: added again, it goes to the end (a Map keeps a re-set key in place).
      this.staged.delete(k);
      if (this.table.get(mapping)) this.reinserted.add(k);
    }
    this.staged.set(k, mapping);
  }

  remove(key: MappingKey): void {
    const k = keyString(key);
    this.staging(k, key);
    this.staged.set(k, null);
  }

  hasChanges(): boolean {
    return this.staged.size > 0;
  }

  savepoint(): DraftSavepoint {
    return { staged: new Map(this.staged), reinserted: new Set(this.reinserted) };
  }

  rollbackTo(savepoint: DraftSavepoint): void {
    this.cachedSize = undefined;
    this.staged = new Map(savepoint.staged);
    this.reinserted = new Set(savepoint.reinserted);
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
    return { mapped, unmapped };
  }

  /** Whether this draft adds a mapping the table does not hold, or points a key at another target (what a full disk may refuse). */
  addsMappings(): boolean {
    for (const [k, m] of this.staged) {
      if (!m) continue;
      const before = this.table.get(keyFromString(k));
      if (!before || !sameRule(ruleOf(before), ruleOf(m))) return true;
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
    this.table.commit(upserts, removals);
    this.staged.clear();
    this.reinserted.clear();
    this.original.clear();
    this.stagedKeyOf.clear();
    this.cachedSize = undefined;
  }
}

export interface DraftSavepoint {
  readonly staged: ReadonlyMap<string, PortMapping | null>;
  readonly reinserted: ReadonlySet<string>;
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
