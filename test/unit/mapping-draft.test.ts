import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MappingDraft, MappingTable, type DraftSavepoint } from '../../core/mapping/table.js';
import { samePinholeRule, type Pinhole, type PinholeRule, type PinholeView } from '../../core/mapping/pinhole.js';
import { keyString, type PortMapping } from '../../core/mapping/types.js';
import { quota } from '../../plugins/quota/index.js';
import { makeMappings } from '../support/fakes.js';
import { buildPolicy } from '../support/policies.js';

/**
 * The draft keeps its size, per-client counts and per-client index as it goes, and rolls back through an undo log:
 * after any sequence of puts, removals, savepoints, rollbacks and commits, what it counts must
 * equal what a walk of what it shows counts, and a rollback must show exactly what it showed at
 * the savepoint.
 */

const CLIENTS = ['192.168.1.10', '192.168.1.11', '192.168.1.12'];

function mapping(port: number, client: string, internalPort: number): PortMapping {
  return {
    remoteHost: '',
    externalPort: port,
    protocol: 'TCP',
    internalPort,
    internalClient: client,
    enabled: true,
    description: '',
    leaseSeconds: 0,
    ownerNonce: undefined,
    expiresAt: null,
    createdBy: { address: client, via: 'upnp-igd:2' },
  };
}

type Op =
  | { kind: 'put'; port: number; client: number; internalPort: number }
  | { kind: 'remove'; port: number }
  | { kind: 'savepoint' }
  | { kind: 'rollback' }
  | { kind: 'commit' };

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('put' as const),
      port: fc.integer({ min: 1, max: 8 }),
      client: fc.integer({ min: 0, max: 2 }),
      internalPort: fc.integer({ min: 1, max: 3 }),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('remove' as const), port: fc.integer({ min: 1, max: 8 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('savepoint' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('rollback' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('commit' as const) }) },
);

/** What a view shows, in order, as comparable strings. */
function shown(view: { values(): Iterable<PortMapping> }): string[] {
  return [...view.values()].map((m) => `${keyString(m)}→${m.internalClient}:${m.internalPort}`);
}

function expectCountsMatchWalk(view: MappingTable | MappingDraft): void {
  const all = [...view.values()];
  expect(view.size).toBe(all.length);
  for (const client of [...CLIENTS, '10.0.0.1']) {
    expect(view.heldBy(client)).toBe(all.filter((m) => m.createdBy.address === client).length);
    // The per-client index shows what a walk shows of that client, in the same order.
    expect([...view.ofClient(client)]).toEqual(all.filter((m) => m.internalClient === client));
  }
}

describe('MappingDraft counts and rollbacks', () => {
  it('size and heldBy equal a walk after every step; a rollback shows what the savepoint saw; commit gives the table what the draft showed', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const table = new MappingTable();
        let draft = new MappingDraft(table);
        const savepoints: Array<{ at: DraftSavepoint; shown: string[] }> = [];
        for (const o of ops) {
          if (o.kind === 'put') draft.put(mapping(o.port, CLIENTS[o.client]!, o.internalPort));
          else if (o.kind === 'remove') draft.remove({ remoteHost: '', externalPort: o.port, protocol: 'TCP' });
          else if (o.kind === 'savepoint') savepoints.push({ at: draft.savepoint(), shown: shown(draft) });
          else if (o.kind === 'rollback') {
            const target = savepoints.pop();
            if (target) {
              draft.rollbackTo(target.at);
              expect(shown(draft)).toEqual(target.shown);
            }
          } else {
            const before = shown(draft);
            draft.commit();
            expect(shown(table)).toEqual(before);
            expectCountsMatchWalk(table);
            draft = new MappingDraft(table);
            savepoints.length = 0;
          }
          expectCountsMatchWalk(draft);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('a mapping taken over by another client moves its count from the one to the other, in the draft and in the table', () => {
    const table = new MappingTable();
    const draft = new MappingDraft(table);
    draft.put(mapping(1, '192.168.1.10', 1));
    draft.commit();
    draft.put(mapping(1, '192.168.1.11', 1));
    expect([draft.heldBy('192.168.1.10'), draft.heldBy('192.168.1.11'), draft.size]).toEqual([0, 1, 1]);
    expect([table.heldBy('192.168.1.10'), table.heldBy('192.168.1.11')]).toEqual([1, 0]);
    draft.commit();
    expect([table.heldBy('192.168.1.10'), table.heldBy('192.168.1.11'), table.size]).toEqual([0, 1, 1]);
  });

  it("a mapping taken over in place keeps its place in the new client's index too (found by the property above)", () => {
    const table = new MappingTable();
    let draft = new MappingDraft(table);
    draft.put(mapping(2, CLIENTS[0]!, 1));
    draft.commit();
    draft = new MappingDraft(table);
    draft.put(mapping(1, CLIENTS[2]!, 1));
    draft.put(mapping(2, CLIENTS[2]!, 1));
    draft.commit();
    expect([...table.ofClient(CLIENTS[2]!)].map((m) => m.externalPort)).toEqual([2, 1]);
    expectCountsMatchWalk(table);
  });

  it('a rollback puts a mapping removed and added again back where it stood (found by the property above)', () => {
    const draft = new MappingDraft(new MappingTable());
    draft.put(mapping(1, CLIENTS[0]!, 1));
    draft.put(mapping(2, CLIENTS[0]!, 1));
    const savepoint = draft.savepoint();
    draft.remove({ remoteHost: '', externalPort: 1, protocol: 'TCP' });
    draft.put(mapping(1, CLIENTS[0]!, 1));
    const ports = () => [...draft.values()].map((m) => m.externalPort);
    expect(ports()).toEqual([2, 1]);
    draft.rollbackTo(savepoint);
    expect(ports()).toEqual([1, 2]);
    expectCountsMatchWalk(draft);
  });

  it('a restore under the quota counts each client as it goes, refused and duplicate entries included', async () => {
    const { mappings } = makeMappings({ plugins: [buildPolicy(quota({ perClient: 3, total: 100 }))] });
    const restored = [1, 2, 2, 3, 4, 5].map((port) => ({ ...mapping(port, CLIENTS[0]!, port), remainingMs: null }));
    restored.push({ ...mapping(6, CLIENTS[1]!, 6), remainingMs: null });
    // Port 2 twice (the second is refused as a conflict and rolled back), then the quota of 3 stops ports 4 and 5.
    expect(await mappings.restore(restored)).toEqual({ restored: 4, refused: 3, failed: 0 });
    expect([...mappings.values()].map((m) => m.externalPort)).toEqual([1, 2, 3, 6]);
    expect([mappings.heldBy(CLIENTS[0]!), mappings.heldBy(CLIENTS[1]!), mappings.view.heldBy(CLIENTS[1]!), mappings.heldBy(CLIENTS[2]!)]).toEqual([3, 1, 1, 0]);
  });
});

describe('MappingDraft pinholes', () => {
  // Two spellings of one address: the rule index compares canonical forms.
  const CLIENT_SPELLINGS = [['2001:db8:77::10', '2001:DB8:77:0::10'], ['2001:db8:77::11']] as const;
  type PinholeOp =
    { kind: 'put'; id: number; client: number; spelling: number; port: number } | { kind: 'close'; id: number } | { kind: 'savepoint' | 'rollback' | 'commit' };
  const pinholeOp: fc.Arbitrary<PinholeOp> = fc.oneof(
    {
      weight: 5,
      arbitrary: fc.record({
        kind: fc.constant('put' as const),
        id: fc.integer({ min: 1, max: 6 }),
        client: fc.integer({ min: 0, max: 1 }),
        spelling: fc.integer({ min: 0, max: 1 }),
        port: fc.integer({ min: 1, max: 3 }),
      }),
    },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('close' as const), id: fc.integer({ min: 1, max: 6 }) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constantFrom('savepoint' as const, 'rollback' as const) }) },
    // Often: the table's own index is what a change to a committed pinhole must keep right.
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('commit' as const) }) },
  );
  const pinholeOf = (o: Extract<PinholeOp, { kind: 'put' }>): Pinhole => {
    const spellings = CLIENT_SPELLINGS[o.client]!;
    const internalClient = spellings[o.spelling % spellings.length]!;
    return {
      id: o.id,
      remoteHost: '',
      remotePort: 0,
      internalClient,
      internalPort: o.port,
      protocol: 'TCP',
      leaseSeconds: 3600,
      expiresAt: 0,
      createdBy: { address: internalClient, via: 'upnp-igd:2' },
    };
  };
  const rules = CLIENT_SPELLINGS.flatMap((spellings, client) => [1, 2, 3].map((port) => pinholeOf({ kind: 'put', id: 0, client, spelling: 0, port })));

  function expectLookupsMatchWalk(view: PinholeView, withRule: (rule: PinholeRule) => Pinhole | undefined): void {
    const all = [...view.values()];
    expect(view.size).toBe(all.length);
    for (const rule of rules) expect(withRule(rule)).toBe(all.find((p) => samePinholeRule(p, rule)));
  }

  it('a rule closed under one UniqueID and opened under another in one change stays found (found by the property below)', () => {
    const table = new MappingTable();
    let draft = new MappingDraft(table);
    const first = pinholeOf({ kind: 'put', id: 1, client: 0, spelling: 0, port: 2 });
    draft.putPinhole(first);
    draft.commit();
    draft = new MappingDraft(table);
    // Staged in this order: UniqueID 5 first (closed, then opened with the rule), then 1 closed.
    draft.removePinhole(5);
    draft.removePinhole(1);
    draft.putPinhole({ ...first, id: 5 });
    expect(draft.pinholeWithRule(first)?.id).toBe(5);
    draft.commit();
    expect(table.pinholeWithRule(first)?.id).toBe(5);
  });

  it('size and the pinhole with a rule equal a walk after every step, in the draft and in the table', () => {
    fc.assert(
      fc.property(fc.array(pinholeOp, { maxLength: 50 }), (ops) => {
        const table = new MappingTable();
        let draft = new MappingDraft(table);
        const savepoints: DraftSavepoint[] = [];
        for (const o of ops) {
          if (o.kind === 'put') {
            const pinhole = pinholeOf(o);
            // As the service does: one pinhole per rule (a renewal keeps the UniqueID of the one it renews).
            const holder = draft.pinholeWithRule(pinhole);
            if (!holder || holder.id === pinhole.id) draft.putPinhole(pinhole);
          } else if (o.kind === 'close') draft.removePinhole(o.id);
          else if (o.kind === 'savepoint') savepoints.push(draft.savepoint());
          else if (o.kind === 'rollback') {
            const target = savepoints.pop();
            if (target) draft.rollbackTo(target);
          } else {
            draft.commit();
            expectLookupsMatchWalk({ get: (id) => table.pinholes.get(id), values: () => table.pinholes.values(), size: table.pinholes.size }, (r) =>
              table.pinholeWithRule(r),
            );
            draft = new MappingDraft(table);
            savepoints.length = 0;
          }
          expectLookupsMatchWalk(draft.pinholes, (r) => draft.pinholeWithRule(r));
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('what the table says the firewall must hold', () => {
  it('is the same array while nothing is committed, and a new one with the change after a commit', () => {
    const table = new MappingTable();
    table.commit([mapping(1000, CLIENTS[0]!, 1000), { ...mapping(1001, CLIENTS[1]!, 1001), enabled: false }], []);
    const rules = table.enabledRules();
    expect(rules.map((r) => r.externalPort)).toEqual([1000]);
    expect(table.enabledRules()).toBe(rules);
    expect(Object.isFrozen(rules)).toBe(true);

    table.commit([mapping(1002, CLIENTS[2]!, 1002)], [keyString(mapping(1000, CLIENTS[0]!, 1000))]);
    expect(table.enabledRules()).not.toBe(rules);
    expect(table.enabledRules().map((r) => r.externalPort)).toEqual([1002]);
    expect(rules.map((r) => r.externalPort)).toEqual([1000]);
  });
});
