import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { toUpnpFault } from '../../core/errors.js';
import { silentLogger } from '../../core/logger.js';
import { DurableMappingJournal } from '../../core/mapping/journal.js';
import { pinholeRuleString, type PinholeRule } from '../../core/mapping/pinhole.js';
import { MappingStateFile } from '../../core/mapping/state-file.js';
import { keyString, type Protocol } from '../../core/mapping/types.js';
import { RefusalRegistry, RefusalReporter } from '../../core/plugins/refusals.js';
import { QuotaPolicy } from '../../plugins/quota/index.js';
import type { QuotaOptions } from '../../plugins/quota/policy.js';
import { makeMappings, settle } from '../support/fakes.js';
import { MemoryStateFs } from '../support/memory-state-fs.js';
import { MODEL_STATE_DIR, MODEL_WALL_NOW, modelSteps } from '../support/model-steps.js';

/**
 * Model-based property test of IPv6 pinholes in the one table: random sequences of open (or renew),
 * update, close, time passing and backend failure, some submitted concurrently, from two LAN hosts,
 * mixed with IPv4 port mappings that share the quota. After every step the pinholes must equal the
 * model (UniqueIDs, rules, owners, expiry, PCP owner nonce, order), the backend must hold exactly
 * their rules, and a restart from what the journal has on disk gives them back.
 *
 * The rules the model states: a host opens pinholes to its own address only (606) and updates or
 * closes only those (606; 704 for an unknown UniqueID); the same rule renews the same UniqueID, a
 * new one takes the next UniqueID (even when the firewall then refuses it); a nonce owns its
 * pinhole (606 for another one, kept through a renewal without one); mappings and pinholes share
 * the per-client and total quotas (701 for a pinhole, 728 for a mapping).
 */

const HOSTS = ['2001:db8:77::10', '2001:db8:77::11'] as const;
const IPV4_CLIENTS = ['192.168.77.10', '192.168.77.11'] as const;
const MAX_LEASE_SECONDS = 100;

interface ModelPinhole {
  readonly id: number;
  readonly rule: PinholeRule;
  readonly createdBy: string;
  readonly expiresAt: number;
  readonly nonce: string | undefined;
}

interface ModelMapping {
  readonly client: string;
  readonly expiresAt: number;
}

type Op =
  | {
      kind: 'open';
      requester: number;
      target: number;
      internalPort: number;
      protocol: Protocol;
      remoteHost: string;
      lease: number;
      nonce: string | undefined;
    }
  | { kind: 'update'; index: number; requester: number; lease: number }
  | { kind: 'close'; index: number; requester: number }
  | { kind: 'map'; client: number; port: number; lease: number }
  | { kind: 'advance'; ms: number };

const host = fc.integer({ min: 0, max: 1 });
const lease = fc.integer({ min: 1, max: 200 });
/** An index into the model's pinholes at the time of the request (past the end: a UniqueID nobody holds). */
const index = fc.integer({ min: 0, max: 4 });
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('open' as const),
      requester: host,
      // Mostly its own address; sometimes the other host's.
      target: fc.integer({ min: 0, max: 3 }).map((n) => (n === 3 ? 1 : 0)),
      internalPort: fc.integer({ min: 1, max: 3 }),
      protocol: fc.constantFrom<Protocol>('TCP', 'UDP'),
      remoteHost: fc.constantFrom('', '2001:db8:ff::2'),
      lease,
      nonce: fc.constantFrom(undefined, 'aaaaaaaaaaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbbbbbbbbbb'),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('update' as const), index, requester: host, lease }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('close' as const), index, requester: host }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('map' as const), client: host, port: fc.integer({ min: 1, max: 4 }), lease }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 150_000 }) }) },
);
const steps = modelSteps(op);
const QUOTA: QuotaOptions = { perClient: 3, total: 5 };

describe('IPv6 pinholes against a model', () => {
  it('keep their UniqueIDs, owners, leases, nonces and rules equal to the model, in the firewall and after a restart', () => checkAgainstModel(undefined));

  it('with quotas shared with the port mappings: 701 for a pinhole and 728 for a mapping past a client quota or a full table', () => checkAgainstModel(QUOTA));
});

async function checkAgainstModel(quota: QuotaOptions | undefined): Promise<void> {
  await fc.assert(
    fc.asyncProperty(steps, fc.integer({ min: 1, max: 6 }), async (groups, compactAfterRecords) => {
      const reporter = new RefusalReporter('quota', new RefusalRegistry(), silentLogger, { now: () => 0 });
      const plugins = quota ? [new QuotaPolicy(quota, reporter)] : [];
      const { mappings, backend, clock } = makeMappings({ plugins, lease: { defaultSeconds: 60, maxSeconds: MAX_LEASE_SECONDS, allowPermanent: false } });
      mappings.checkPinholeTargets((internalClient, requester) =>
        Promise.resolve(internalClient === requester ? undefined : 'not an address of the requester'),
      );
      const fs = new MemoryStateFs();
      const file = new MappingStateFile(MODEL_STATE_DIR, silentLogger, () => MODEL_WALL_NOW, fs);
      const persisted = {
        mappings: () => mappings.values(),
        pinholes: () => mappings.pinholes.values(),
        remainingMs: (e: Parameters<typeof mappings.leaseLeftMs>[0]) => mappings.leaseLeftMs(e),
      };
      mappings.persistTo(
        new DurableMappingJournal(file, persisted, silentLogger, { compactAfterRecords, errorLogIntervalMs: 60_000 }, () => MODEL_WALL_NOW),
        'refuse',
      );

      const pinholes = new Map<number, ModelPinhole>(); // insertion order = the table's order
      const mapped = new Map<string, ModelMapping>();
      let lastId = 0;
      const expiry = (seconds: number) => clock.now() + Math.min(seconds, MAX_LEASE_SECONDS) * 1000;
      const total = () => pinholes.size + mapped.size;
      const heldBy = (address: string) =>
        [...pinholes.values()].filter((p) => p.createdBy === address).length + [...mapped.values()].filter((m) => m.client === address).length;
      const idAt = (i: number) => [...pinholes.keys()][i] ?? 60_000;

      /** The model's answer (undefined: success) to one request, in queue order. */
      const apply = (o: Exclude<Op, { kind: 'advance' }>, backendFails: boolean, id: number): number | undefined => {
        switch (o.kind) {
          case 'open': {
            const requester = HOSTS[o.requester]!;
            const rule: PinholeRule = {
              remoteHost: o.remoteHost,
              remotePort: 0,
              internalClient: HOSTS[o.target]!,
              internalPort: o.internalPort,
              protocol: o.protocol,
            };
            if (rule.internalClient !== requester) return 606;
            const held = [...pinholes.values()].find((p) => pinholeRuleString(p.rule) === pinholeRuleString(rule));
            if (held?.nonce !== undefined && o.nonce !== undefined && held.nonce !== o.nonce) return 606;
            if (quota && total() - (held ? 1 : 0) >= quota.total) return 701;
            if (quota && held?.createdBy !== requester && heldBy(requester) >= quota.perClient) return 701;
            const newId = held?.id ?? ++lastId;
            if (backendFails && !held) return 501;
            pinholes.set(newId, { id: newId, rule, createdBy: held?.createdBy ?? requester, expiresAt: expiry(o.lease), nonce: o.nonce ?? held?.nonce });
            return undefined;
          }
          case 'update': {
            const held = pinholes.get(id);
            if (!held) return 704;
            if (held.rule.internalClient !== HOSTS[o.requester]) return 606;
            pinholes.set(id, { ...held, expiresAt: expiry(o.lease) });
            return undefined;
          }
          case 'close': {
            const held = pinholes.get(id);
            if (!held) return 704;
            if (held.rule.internalClient !== HOSTS[o.requester]) return 606;
            if (backendFails) return 501;
            pinholes.delete(id);
            return undefined;
          }
          case 'map': {
            const client = IPV4_CLIENTS[o.client]!;
            const key = keyString({ protocol: 'TCP', externalPort: o.port, remoteHost: '' });
            const held = mapped.get(key);
            if (quota && total() - (held ? 1 : 0) >= quota.total) return 728;
            if (quota && held?.client !== client && heldBy(client) >= quota.perClient) return 728;
            if (held && held.client !== client) return 718;
            if (backendFails && !held) return 501;
            mapped.set(key, { client, expiresAt: expiry(o.lease) });
            return undefined;
          }
        }
      };

      const submit = (o: Exclude<Op, { kind: 'advance' }>, id: number): Promise<unknown> => {
        switch (o.kind) {
          case 'open':
            return mappings.openPinhole(
              {
                remoteHost: o.remoteHost,
                remotePort: 0,
                internalClient: HOSTS[o.target]!,
                internalPort: o.internalPort,
                protocol: o.protocol,
                leaseSeconds: o.lease,
                ...(o.nonce !== undefined && { ownerNonce: o.nonce }),
              },
              { address: HOSTS[o.requester]!, via: o.nonce === undefined ? 'upnp-igd:2' : 'pcp' },
            );
          case 'update':
            return mappings.updatePinhole(id, o.lease, { address: HOSTS[o.requester]!, via: 'upnp-igd:2' });
          case 'close':
            return mappings.closePinhole(id, { address: HOSTS[o.requester]!, via: 'upnp-igd:2' });
          case 'map': {
            const client = IPV4_CLIENTS[o.client]!;
            const request = { remoteHost: '', externalPort: o.port, protocol: 'TCP' as const, internalClient: client, internalPort: 1000 + o.port };
            return mappings.add({ ...request, enabled: true, description: 'model', leaseSeconds: o.lease }, { address: client, via: 'upnp-igd:2' });
          }
        }
      };

      const expectedCodes: Array<number | undefined> = [];
      const actualCodes: Array<number | undefined> = [];
      for (const { ops: group, backendFails } of groups) {
        backend.failWhen = backendFails ? () => true : undefined;
        const answers: Array<Promise<number | undefined>> = [];
        for (const o of group) {
          if (o.kind === 'advance') continue;
          // The UniqueID an update or close names is read from the model as it stands before it.
          const id = o.kind === 'update' || o.kind === 'close' ? idAt(o.index) : 0;
          expectedCodes.push(apply(o, backendFails, id));
          answers.push(
            submit(o, id).then(
              () => undefined,
              (err: unknown) => toUpnpFault(err).upnpCode,
            ),
          );
        }
        actualCodes.push(...(await Promise.all(answers)));
        backend.failWhen = undefined;
        for (const o of group) {
          if (o.kind !== 'advance') continue;
          await clock.advance(o.ms);
          await settle();
          for (const [id, p] of pinholes) if (p.expiresAt <= clock.now()) pinholes.delete(id);
          for (const [key, m] of mapped) if (m.expiresAt <= clock.now()) mapped.delete(key);
        }

        expect(actualCodes).toEqual(expectedCodes);
        const live = [...mappings.pinholes.values()];
        expect(live.map((p) => [p.id, pinholeRuleString(p), p.createdBy.address, p.expiresAt, p.ownerNonce])).toEqual(
          [...pinholes.values()].map((p) => [p.id, pinholeRuleString(p.rule), p.createdBy, p.expiresAt, p.nonce]),
        );
        expect([...mappings.values()].map((m) => [keyString(m), m.internalClient])).toEqual([...mapped].map(([key, m]) => [key, m.client]));
        expect([...backend.installedPinholes.keys()].sort()).toEqual(live.map((p) => pinholeRuleString(p)).sort());

        // Restart now, from the disk as a crash would leave it.
        const onDisk = new MemoryStateFs();
        for (const [path, text] of fs.files) onDisk.files.set(path, text);
        const restored = await new MappingStateFile(MODEL_STATE_DIR, silentLogger, () => MODEL_WALL_NOW, onDisk).load();
        expect(restored.pinholes.map((p) => [p.id, pinholeRuleString(p), p.createdBy.address, p.ownerNonce])).toEqual(
          live.map((p) => [p.id, pinholeRuleString(p), p.createdBy.address, p.ownerNonce]),
        );
        for (const p of restored.pinholes) expect(p.remainingMs).toBeLessThanOrEqual(p.leaseSeconds * 1000);
      }
    }),
    { numRuns: 300 },
  );
}
