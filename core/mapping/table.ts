import { MAX_PINHOLE_ID, pinholeRuleOf, samePinholeRule, type Pinhole, type PinholeRule, type PinholeView } from './pinhole.js';
import type { MappingChanges } from './state-file.js';
import { keyString, ruleOf, sameRule, type ChangeSet, type MappingKey, type MappingView, type PortMapping, type Protocol, type RuleSpec } from './types.js';

/**
 * The mappings, in a stable order (the order GetGenericPortMappingEntry indexes). Lookup by key
 * and by index are O(1); a replace keeps its index; a removal shifts later entries down by one.
 */
export class MappingTable implements MappingView {
  private readonly byKey = new Map<string, PortMapping>();
  private ordered: PortMapping[] = [];
  /** IPv6 pinholes by UniqueID, in the order they were opened. */
  readonly pinholes = new Map<number, Pinhole>();
  /** `protocol/port` → keys of the mappings on that port restricted to one remote host (rare: most are for any host). */
  private readonly restrictedByPort = new Map<string, Set<string>>();

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
  commit(upserts: Iterable<PortMapping>, removals: Iterable<string>, pinholes: ReadonlyMap<number, Pinhole | null> = new Map()): void {
    for (const [id, pinhole] of pinholes) {
      if (pinhole) this.pinholes.set(id, pinhole);
      else this.pinholes.delete(id);
    }
    const removed = new Set<string>();
    for (const k of removals) {
      const mapping = this.byKey.get(k);
      if (mapping && this.byKey.delete(k)) {
        removed.add(k);
        this.unindex(mapping, k);
      }
    }
    if (removed.size > 0) this.ordered = this.ordered.filter((m) => !removed.has(keyString(m)));
    for (const mapping of upserts) {
      const k = keyString(mapping);
      const previous = this.byKey.get(k);
      this.byKey.set(k, mapping);
      if (previous) this.ordered[this.ordered.indexOf(previous)] = mapping;
      else this.ordered.push(mapping);
      this.index(mapping, k);
    }
  }

  /** Keys of the mappings on `protocol` `port` that are restricted to one remote host. */
  restrictedOn(protocol: Protocol, port: number): Iterable<string> {
    return this.restrictedByPort.get(`${protocol}/${port}`) ?? [];
  }

  private index(mapping: PortMapping, k: string): void {
    if (mapping.remoteHost === '') return;
    const port = `${mapping.protocol}/${mapping.externalPort}`;
    const keys = this.restrictedByPort.get(port) ?? new Set<string>();
    this.restrictedByPort.set(port, keys.add(k));
  }

  private unindex(mapping: PortMapping, k: string): void {
    const port = `${mapping.protocol}/${mapping.externalPort}`;
    const keys = this.restrictedByPort.get(port);
    if (keys?.delete(k) && keys.size === 0) this.restrictedByPort.delete(port);
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
  /** UniqueID → staged pinhole, or null for a staged removal. */
  private stagedPinholes = new Map<number, Pinhole | null>();
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

  /** The pinholes as they stand in this draft. */
  readonly pinholes: PinholeView = {
    get: (id) => (this.stagedPinholes.has(id) ? (this.stagedPinholes.get(id) ?? undefined) : this.table.pinholes.get(id)),
    values: () => this.pinholeValues(),
    get size() {
      return [...this.values()].length;
    },
  };

  private *pinholeValues(): IterableIterator<Pinhole> {
    for (const [id, p] of this.table.pinholes) if (!this.stagedPinholes.has(id)) yield p;
    for (const p of this.stagedPinholes.values()) if (p) yield p;
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
    const k = keyString(key);
    if (this.staged.has(k)) return this.staged.get(k) ?? undefined;
    return this.table.get(key);
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
    return this.staged.size > 0 || this.stagedPinholes.size > 0;
  }

  savepoint(): DraftSavepoint {
    return { staged: new Map(this.staged), reinserted: new Set(this.reinserted), pinholes: new Map(this.stagedPinholes) };
  }

  rollbackTo(savepoint: DraftSavepoint): void {
    this.cachedSize = undefined;
    this.staged = new Map(savepoint.staged);
    this.reinserted = new Set(savepoint.reinserted);
    this.stagedPinholes = new Map(savepoint.pinholes);
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
    this.cachedSize = undefined;
  }
}

export interface DraftSavepoint {
  readonly staged: ReadonlyMap<string, PortMapping | null>;
  readonly reinserted: ReadonlySet<string>;
  readonly pinholes: ReadonlyMap<number, Pinhole | null>;
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
