import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { toUpnpFault } from '../../core/errors.js';
import { silentLogger } from '../../core/logger.js';
import { DurableMappingJournal } from '../../core/mapping/journal.js';
import { JOURNAL_FILE, MappingStateFile } from '../../core/mapping/state-file.js';
import { keyString, ruleOf, type MappingRequest, type Protocol } from '../../core/mapping/types.js';
import { RefusalRegistry, RefusalReporter } from '../../core/plugins/refusals.js';
import { QuotaPolicy } from '../../plugins/quota/index.js';
import type { QuotaOptions } from '../../plugins/quota/policy.js';
import { makeMappings, settle } from '../support/fakes.js';
import { MemoryStateFs } from '../support/memory-state-fs.js';
import { MODEL_STATE_DIR, MODEL_WALL_NOW, modelSteps } from '../support/model-steps.js';

/**
 * Model-based property test: random sequences of add / delete / time passing / backend failure,
 * some submitted concurrently, through UPnP, NAT-PMP and PCP (cross-protocol renewals keep the
 * later lease; a PCP nonce owns its mapping), against a plain Map model. After every step the table must equal
 * the model (same keys, targets and order) and the backend must hold exactly the table's rules;
 * and a restart from what the journal has on disk (snapshot + journal, compacted every few
 * records, with a torn record at its end as a crash mid-write leaves one) gives exactly the table.
 */

interface ModelEntry {
  client: string;
  internalPort: number;
  expiresAt: number | null;
  /** The protocol that last granted it ('upnp-igd', 'nat-pmp', 'pcp'). */
  protocol: string;
  nonce: string | undefined;
}

type Op =
  | {
      kind: 'add';
      port: number;
      protocol: Protocol;
      remoteHost: string;
      client: string;
      internalPort: number;
      lease: number;
      via: string;
      nonce: string | undefined;
    }
  | { kind: 'delete'; port: number; protocol: Protocol; remoteHost: string; requester: string }
  | { kind: 'advance'; ms: number };

const protocol = fc.constantFrom<Protocol>('TCP', 'UDP');
const remoteHost = fc.constantFrom('', '203.0.113.9');
const client = fc.constantFrom('192.168.77.10', '192.168.77.11', '192.168.77.12');
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('add' as const),
      port: fc.integer({ min: 1, max: 6 }),
      protocol,
      remoteHost,
      client,
      internalPort: fc.integer({ min: 1, max: 3 }),
      lease: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 200 })),
      // Front-ends: UPnP, NAT-PMP, PCP (whose requests carry an owner nonce).
      via: fc.constantFrom('upnp-igd:2', 'upnp-igd:1', 'nat-pmp', 'pcp'),
      nonce: fc.constantFrom(undefined, 'aaaaaaaaaaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbbbbbbbbbb'),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), port: fc.integer({ min: 1, max: 4 }), protocol, remoteHost, requester: client }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 150_000 }) }) },
);
const steps = modelSteps(op);

/** Small quotas, so that random sequences reach them (both the per-client one and the total). */
const QUOTA: QuotaOptions = { perClient: 3, total: 5 };

describe('mapping lifecycle against a model', () => {
  it('keeps the table, its order and the firewall equal to the model', () => checkAgainstModel(undefined));

  it('with quotas: a client past its quota or a full table gets 728, renewals never count twice, also through retried batches', () => checkAgainstModel(QUOTA));
});

async function checkAgainstModel(quota: QuotaOptions | undefined): Promise<void> {
  await fc.assert(
    fc.asyncProperty(steps, fc.integer({ min: 1, max: 6 }), fc.constantFrom('', '{"t":1,"c":[{"unmap"', '{'), async (groups, compactAfterRecords, tornTail) => {
      const plugins = quota ? [new QuotaPolicy(quota, new RefusalReporter('quota', new RefusalRegistry(), silentLogger, { now: () => 0 }))] : [];
      const { mappings, backend, clock } = makeMappings({ plugins, lease: { defaultSeconds: 60, maxSeconds: 100, allowPermanent: true } });
      const fs = new MemoryStateFs();
      const file = new MappingStateFile(MODEL_STATE_DIR, silentLogger, () => MODEL_WALL_NOW, fs);
      const table = { mappings: () => mappings.values(), remainingMs: (m: Parameters<typeof mappings.leaseLeftMs>[0]) => mappings.leaseLeftMs(m) };
      mappings.persistTo(
        new DurableMappingJournal(file, table, silentLogger, { compactAfterRecords, errorLogIntervalMs: 60_000 }, () => MODEL_WALL_NOW),
        'refuse',
      );
      const model = new Map<string, ModelEntry>(); // insertion order = index order
      const expectedCodes: Array<number | undefined> = [];
      const actualCodes: Array<number | undefined> = [];

      const applyToModel = (o: Op, backendFails: boolean): number | undefined => {
        if (o.kind === 'add') {
          const k = keyString({ protocol: o.protocol, externalPort: o.port, remoteHost: o.remoteHost });
          const existing = model.get(k);
          if (quota) {
            const renewal = existing?.client === o.client;
            if (model.size - (existing ? 1 : 0) >= quota.total) return 728;
            if (!renewal && [...model.values()].filter((e) => e.client === o.client).length >= quota.perClient) return 728;
          }
          // A port belongs to one client, whichever remote host each mapping of it is restricted to.
          const portPrefix = `${o.protocol}/${o.port}/`;
          if ([...model].some(([key, e]) => key.startsWith(portPrefix) && e.client !== o.client)) return 718;
          // A nonce owns the mapping: a request with another one may not renew it.
          if (existing?.nonce !== undefined && o.nonce !== undefined && existing.nonce !== o.nonce) return 606;
          const unchangedRule = existing && existing.internalPort === o.internalPort;
          if (backendFails && !unchangedRule) return 501;
          const asked = o.lease === 0 ? null : clock.now() + Math.min(o.lease, 100) * 1000;
          const viaProtocol = o.via.split(':')[0]!;
          // Renewed through another protocol: the later of the two leases.
          const crossProtocol = unchangedRule && existing.protocol !== viaProtocol;
          const expiresAt = !crossProtocol ? asked : asked === null || existing.expiresAt === null ? null : Math.max(asked, existing.expiresAt);
          const nonce = o.nonce ?? (unchangedRule ? existing.nonce : undefined);
          model.set(k, { client: o.client, internalPort: o.internalPort, expiresAt, protocol: viaProtocol, nonce });
          return undefined;
        }
        if (o.kind === 'delete') {
          const k = keyString({ protocol: o.protocol, externalPort: o.port, remoteHost: o.remoteHost });
          if (!model.has(k)) return 714;
          if (backendFails) return 501;
          model.delete(k);
          return undefined;
        }
        return undefined;
      };

      for (const { ops: group, backendFails: fails } of groups) {
        const submitted: Array<Promise<number | undefined>> = [];
        for (const o of group) {
          if (o.kind === 'advance') continue;
          submitted.push(
            (o.kind === 'add'
              ? mappings.add(request(o), { address: o.client, via: o.via })
              : mappings.delete({ protocol: o.protocol, externalPort: o.port, remoteHost: o.remoteHost }, { address: o.requester, via: 'test' })
            ).then(
              () => undefined,
              (err) => toUpnpFault(err).upnpCode,
            ),
          );
        }
        backend.failWhen = fails ? () => true : undefined;
        for (const o of group) if (o.kind === 'add' || o.kind === 'delete') expectedCodes.push(applyToModel(o, fails));
        actualCodes.push(...(await Promise.all(submitted)));
        backend.failWhen = undefined;

        for (const o of group) {
          if (o.kind !== 'advance') continue;
          await clock.advance(o.ms);
          await settle();
          for (const [k, e] of model) if (e.expiresAt !== null && e.expiresAt <= clock.now()) model.delete(k);
        }

        expect(actualCodes).toEqual(expectedCodes);
        const table = [...mappings.values()].map((m) => [keyString(m), m.internalClient, m.internalPort, m.expiresAt, m.ownerNonce]);
        const expected = [...model.entries()].map(([k, e]) => [k, e.client, e.internalPort, e.expiresAt, e.nonce]);
        expect(table).toEqual(expected);
        const installed = [...backend.installed.values()].map((r) => `${keyString(r)}>${r.internalClient}:${r.internalPort}`).sort();
        const fromTable = [...mappings.values()]
          .map((m) => ruleOf(m))
          .map((r) => `${keyString(r)}>${r.internalClient}:${r.internalPort}`)
          .sort();
        expect(installed).toEqual(fromTable);
        for (let i = 0; i < mappings.size; i++) expect(keyString(mappings.at(i)!)).toBe(expected[i]![0]);

        // Restart now, from the disk as a crash would leave it.
        const journalPath = `${MODEL_STATE_DIR}/${JOURNAL_FILE}`;
        const onDisk = new MemoryStateFs();
        for (const [path, text] of fs.files) onDisk.files.set(path, text);
        onDisk.files.set(journalPath, (onDisk.files.get(journalPath) ?? '') + tornTail);
        const restored = await new MappingStateFile(MODEL_STATE_DIR, silentLogger, () => MODEL_WALL_NOW, onDisk).load();
        const target = (m: { internalClient: string; internalPort: number } & Parameters<typeof keyString>[0]) =>
          `${keyString(m)}>${m.internalClient}:${m.internalPort}`;
        expect(restored.mappings.map(target)).toEqual([...mappings.values()].map(target));
        for (const m of restored.mappings) {
          const live = mappings.get(m)!;
          expect(m.ownerNonce).toBe(live.ownerNonce);
          expect(m.remainingMs === null).toBe(live.expiresAt === null);
          if (m.remainingMs !== null) expect(m.remainingMs).toBeLessThanOrEqual((live.leaseSeconds || 60) * 1000);
        }
      }
    }),
    { numRuns: 300 },
  );
}

function request(o: Extract<Op, { kind: 'add' }>): MappingRequest {
  return {
    remoteHost: o.remoteHost,
    externalPort: o.port,
    protocol: o.protocol,
    internalClient: o.client,
    internalPort: o.internalPort,
    enabled: true,
    description: 'model',
    leaseSeconds: o.lease,
    ...(o.nonce === undefined ? {} : { ownerNonce: o.nonce }),
  };
}
