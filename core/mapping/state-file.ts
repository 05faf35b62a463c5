import { join } from 'node:path';
import { z } from 'zod';
import { messageOf } from '../errors.js';
import type { Logger } from '../logger.js';
import { nodeStateFs, type StateFs } from './state-fs.js';
import { MAX_PINHOLE_ID, type Pinhole } from './pinhole.js';
import type { RestoredPinhole } from './service.js';
import { PROTOCOLS, keyString, type MappingKey, type MappingRequest, type PortMapping, type Requester } from './types.js';

/** The snapshot of the mappings in the state directory (the file earlier releases wrote alone). */
export const MAPPINGS_FILE = 'mappings.json';
/** The changes since the snapshot, one line per committed batch, appended and fsync'ed before the batch is answered. */
export const JOURNAL_FILE = 'mappings.journal';
const FORMAT_VERSION = 1;

/**
 * Limits on what a state file may restore: the same fields a SOAP request may carry. A description
 * comes in a SOAP body, which the HTTP server caps at 16 KiB (DEFAULT_HTTP_LIMITS.maxBodyBytes).
 */
export const STORED_MAPPING_LIMITS = { maxDescriptionLength: 16 * 1024 } as const;

/** What the lease left is computed from: a mapping's or a pinhole's monotonic expiry. */
export interface LeaseHolder {
  readonly expiresAt: number | null;
}

/** A mapping as stored: its lease ends at a wall-clock time, which outlives the process (the monotonic clock does not). */
export interface StoredMapping extends MappingRequest {
  /** Wall-clock milliseconds since the epoch; null for a permanent lease. */
  readonly expiresAtWallMs: number | null;
  readonly createdBy: Requester;
}

/** A mapping to restore: the lease time it has left when upnpd starts. */
export interface RestoredMapping extends MappingRequest {
  /** Milliseconds left on the lease; null for a permanent one. */
  readonly remainingMs: number | null;
  readonly createdBy: Requester;
}

export interface LoadedMappings {
  readonly mappings: readonly RestoredMapping[];
  /** IPv6 pinholes whose leases have not ended. */
  readonly pinholes: readonly RestoredPinhole[];
  /** The last UniqueID given out before the stop (0: none known), so that the next start does not give it again at once. */
  readonly lastPinholeId: number;
  /** Leases that ended while upnpd was not running. */
  readonly expired: number;
  /** Entries that are not valid mappings (each is logged), skipped. */
  readonly invalid: number;
  /** Whether what was kept came back: see RestoredState. */
  readonly state: RestoredState;
}

/**
 * What a start found of the state kept before it: `intact` (the snapshot read, and the journal if
 * there was one); `none` (no snapshot: a first start, or one deleted); `lost` (a file that could
 * not be read, set aside: mappings a client was told it had may be gone). A protocol whose clients
 * must learn that the gateway lost its state (PCP and NAT-PMP: their epoch starts again) reads it.
 */
export type RestoredState = 'intact' | 'none' | 'lost';

/** What one journal line changes: a mapping added or replaced, or the key of one removed. */
export interface MappingChanges {
  readonly mapped: readonly PortMapping[];
  readonly unmapped: readonly MappingKey[];
  /** IPv6 pinholes opened or renewed, and the UniqueIDs of those closed (absent: none). */
  readonly pinholes?: readonly Pinhole[];
  readonly closedPinholes?: readonly number[];
}

const keySchema = z
  .object({
    protocol: z.enum(PROTOCOLS),
    externalPort: z.number().int().min(1).max(65535),
    remoteHost: z.union([z.literal(''), z.ipv4()]),
  })
  .strict();

/** PCP's 96-bit mapping nonce, in hex. */
const ownerNonceSchema = z.string().regex(/^[0-9a-f]{24}$/);

const storedMappingSchema = keySchema
  .extend({
    internalClient: z.ipv4(),
    internalPort: z.number().int().min(1).max(65535),
    enabled: z.boolean(),
    description: z.string().max(STORED_MAPPING_LIMITS.maxDescriptionLength),
    leaseSeconds: z.number().int().min(0),
    expiresAtWallMs: z.number().int().nullable(),
    createdBy: z.object({ address: z.string(), via: z.string() }).strict(),
    /** PCP's owner nonce (optional: files without it, from earlier releases, still load). */
    ownerNonce: ownerNonceSchema.optional(),
  })
  .strict();

const pinholeIdSchema = z.number().int().min(1).max(MAX_PINHOLE_ID);
const port = (min: number) => z.number().int().min(min).max(65535);
/** A pinhole as stored. Files without pinholes (earlier releases) read as before; `pinholes` is optional. */
const storedPinholeSchema = z
  .object({
    id: pinholeIdSchema,
    remoteHost: z.union([z.literal(''), z.ipv6()]),
    remotePort: port(0),
    internalClient: z.ipv6(),
    internalPort: port(1),
    protocol: z.enum(PROTOCOLS),
    leaseSeconds: z.number().int().min(1),
    expiresAtWallMs: z.number().int(),
    createdBy: z.object({ address: z.string(), via: z.string() }).strict(),
    /** PCP's owner nonce (optional, as for mappings). */
    ownerNonce: ownerNonceSchema.optional(),
  })
  .strict();
type StoredPinhole = z.output<typeof storedPinholeSchema>;

const snapshotSchema = z.object({
  version: z.literal(FORMAT_VERSION),
  savedAt: z.string(),
  mappings: z.array(z.unknown()),
  pinholes: z.array(z.unknown()).optional(),
  /** The last UniqueID given out (absent in files of earlier releases and of tables that never had a pinhole); checked on its own, so a bad one costs only itself. */
  lastPinholeId: z.unknown().optional(),
});

/** One journal line: the wall-clock time of the write and the batch's changes, in order. */
const journalLineSchema = z.object({
  t: z.number().int(),
  c: z.array(
    z.union([
      z.object({ map: z.unknown() }).strict(),
      z.object({ unmap: z.unknown() }).strict(),
      z.object({ pin: z.unknown() }).strict(),
      z.object({ unpin: z.unknown() }).strict(),
    ]),
  ),
});

/** An entry read back, with the wall-clock time it was written (a bound on its lease). */
interface ReadEntry<T = StoredMapping> {
  readonly stored: T;
  readonly writtenAt: number;
}

/**
 * The mappings in the state directory: a snapshot (`mappings.json`, replaced atomically) and a
 * journal of the batches committed since (`mappings.journal`, one JSON line per batch, appended
 * and fsync'ed). Reading replays the journal over the snapshot; replaying a line twice changes
 * nothing (each sets or removes whole entries), so a crash between writing a new snapshot and
 * emptying the journal is harmless. What cannot be read is set aside and reported, never fatal.
 */
export class MappingStateFile {
  readonly path: string;
  readonly journalPath: string;
  /** Files set aside as unreadable by the load under way (what makes its state `lost`). */
  private filesSetAside = 0;

  constructor(
    readonly directory: string,
    private readonly logger: Logger,
    private readonly wallClock: () => number = Date.now,
    private readonly fs: StateFs = nodeStateFs,
  ) {
    this.path = join(directory, MAPPINGS_FILE);
    this.journalPath = join(directory, JOURNAL_FILE);
  }

  /** Creates the directory (only root may read it: it names LAN hosts and their ports). */
  async prepare(): Promise<void> {
    await this.fs.mkdir(this.directory);
  }

  /** The stored mappings whose leases have not ended: the snapshot with the journal replayed over it. Never throws. */
  async load(): Promise<LoadedMappings> {
    this.filesSetAside = 0;
    const entries = new Map<string, ReadEntry>();
    const pinholeEntries = new Map<number, ReadEntry<StoredPinhole>>();
    let invalid = 0;
    const snapshot = await this.readSnapshot();
    if (snapshot) {
      const savedAt = Date.parse(snapshot.savedAt);
      for (const [index, entry] of (snapshot.pinholes ?? []).entries()) {
        const stored = this.validPinhole(entry, `${this.path}: pinholes[${index}]`);
        if (stored) pinholeEntries.set(stored.id, { stored, writtenAt: savedAt });
        else invalid += 1;
      }
      for (const [index, entry] of snapshot.mappings.entries()) {
        const stored = this.validMapping(entry, `${this.path}: mappings[${index}]`);
        if (stored) entries.set(keyString(stored), { stored, writtenAt: savedAt });
        else invalid += 1;
      }
    }
    // Older snapshots do not say: the highest UniqueID they hold is the best guess.
    const kept = pinholeIdSchema.safeParse(snapshot?.lastPinholeId);
    const ids = { last: kept.success ? kept.data : Math.max(0, ...pinholeEntries.keys()) };
    invalid += await this.replayJournal(entries, pinholeEntries, ids);
    let expired = 0;
    const now = this.wallClock();
    const pinholes: RestoredPinhole[] = [];
    for (const { stored, writtenAt } of pinholeEntries.values()) {
      const { expiresAtWallMs, ...pinhole } = stored;
      if (expiresAtWallMs <= now) expired += 1;
      else pinholes.push({ ...pinhole, remainingMs: leaseLeft(expiresAtWallMs, now, writtenAt, pinhole.leaseSeconds) });
    }
    const mappings: RestoredMapping[] = [];
    for (const { stored, writtenAt } of entries.values()) {
      const { expiresAtWallMs, ...request } = stored;
      if (expiresAtWallMs !== null && expiresAtWallMs <= now) {
        expired += 1;
        continue;
      }
      mappings.push({ ...request, remainingMs: expiresAtWallMs === null ? null : leaseLeft(expiresAtWallMs, now, writtenAt, request.leaseSeconds) });
    }
    return { mappings, pinholes, lastPinholeId: ids.last, expired, invalid, state: this.filesSetAside > 0 ? 'lost' : snapshot ? 'intact' : 'none' };
  }

  /** Copies the snapshot and the journal next to themselves as `<file>.<why>-<time>`; returns the snapshot copy's path. */
  async keepCopy(why: string): Promise<string> {
    const suffix = `${why}-${this.timestamp()}`;
    for (const path of [this.path, this.journalPath]) {
      if ((await this.fs.readText(path)) !== undefined) await this.fs.copy(path, `${path}.${suffix}`);
    }
    return `${this.path}.${suffix}`;
  }

  /**
   * Compaction: replaces the snapshot with these mappings, then empties the journal. `remainingMs`
   * gives each one's lease left now (null: permanent); `lastPinholeId` is the last UniqueID given out (0: none).
   */
  async save(
    mappings: Iterable<PortMapping>,
    remainingMs: (entry: LeaseHolder) => number | null,
    pinholes: Iterable<Pinhole> = [],
    lastPinholeId = 0,
  ): Promise<void> {
    const now = this.wallClock();
    const stored = [...mappings].map((m) => storedOf(m, remainingMs(m), now));
    const storedPinholes = [...pinholes].map((p) => storedPinholeOf(p, remainingMs, now));
    // Without pinholes the file is exactly what earlier releases wrote (and read).
    const snapshot = {
      version: FORMAT_VERSION,
      savedAt: new Date(now).toISOString(),
      mappings: stored,
      ...(storedPinholes.length > 0 && { pinholes: storedPinholes }),
      ...(lastPinholeId > 0 && { lastPinholeId }),
    };
    await this.fs.replace(this.path, `${JSON.stringify(snapshot, null, 1)}\n`);
    await this.fs.replace(this.journalPath, '');
  }

  /** Appends one batch's changes to the journal as one line; resolves once it is on disk. */
  async append(changes: MappingChanges, remainingMs: (entry: LeaseHolder) => number | null): Promise<void> {
    const now = this.wallClock();
    const c = [
      ...changes.unmapped.map((k) => ({ unmap: { protocol: k.protocol, externalPort: k.externalPort, remoteHost: k.remoteHost } })),
      ...changes.mapped.map((m) => ({ map: storedOf(m, remainingMs(m), now) })),
      ...(changes.closedPinholes ?? []).map((id) => ({ unpin: id })),
      ...(changes.pinholes ?? []).map((p) => ({ pin: storedPinholeOf(p, remainingMs, now) })),
    ];
    await this.fs.append(this.journalPath, `${JSON.stringify({ t: now, c })}\n`);
  }

  /** Closes the journal kept open between appends (at shutdown). */
  async close(): Promise<void> {
    await this.fs.close?.(this.journalPath);
  }

  private async readSnapshot(): Promise<z.output<typeof snapshotSchema> | undefined> {
    let text: string | undefined;
    try {
      text = await this.fs.readText(this.path);
    } catch (err) {
      await this.setAside(this.path, `cannot be read (${firstLine(err)})`);
      return undefined;
    }
    if (text === undefined) return undefined;
    try {
      return snapshotSchema.parse(JSON.parse(text));
    } catch (err) {
      await this.setAside(this.path, `is not a mappings file upnpd can read (${firstLine(err)})`);
      return undefined;
    }
  }

  /** Replays the journal's lines over `entries`; returns how many entries were invalid. A torn last line (a crash mid-write) is ignored. */
  private async replayJournal(entries: Map<string, ReadEntry>, pinholes: Map<number, ReadEntry<StoredPinhole>>, ids: { last: number }): Promise<number> {
    let text: string | undefined;
    try {
      text = await this.fs.readText(this.journalPath);
    } catch (err) {
      await this.setAside(this.journalPath, `cannot be read (${firstLine(err)})`);
      return 0;
    }
    if (!text) return 0;
    const lines = text.split('\n');
    const tail = lines.pop();
    if (tail) {
      // Never acknowledged: the batch is answered only after its whole line is on disk.
      this.logger.warn(
        { file: this.journalPath, bytes: tail.length },
        `${this.journalPath}: the last record is incomplete (upnpd stopped while writing it); ignored, as its changes were never acknowledged`,
      );
    }
    let invalid = 0;
    for (const [number, line] of lines.entries()) {
      const where = `${this.journalPath}:${number + 1}`;
      let record: z.output<typeof journalLineSchema>;
      try {
        record = journalLineSchema.parse(JSON.parse(line));
      } catch (err) {
        invalid += 1;
        this.logger.warn({ file: this.journalPath, line: number + 1 }, `${where}: not a journal record, skipped (${firstLine(err)})`);
        continue;
      }
      for (const change of record.c) {
        if ('unpin' in change) {
          const id = pinholeIdSchema.safeParse(change.unpin);
          if (id.success) pinholes.delete(id.data);
          else invalid += 1;
          continue;
        }
        if ('pin' in change) {
          const stored = this.validPinhole(change.pin, where);
          if (!stored) invalid += 1;
          else {
            // One the table does not hold yet was opened then, under the next UniqueID (a renewal keeps its own).
            if (!pinholes.has(stored.id)) ids.last = stored.id;
            pinholes.set(stored.id, { stored, writtenAt: record.t });
          }
          continue;
        }
        if ('unmap' in change) {
          const key = keySchema.safeParse(change.unmap);
          if (key.success) entries.delete(keyString(key.data));
          else {
            invalid += 1;
            this.logger.warn({ file: this.journalPath, line: number + 1 }, `${where}: removal skipped: ${flat(key.error)}`);
          }
          continue;
        }
        const stored = this.validMapping(change.map, where);
        if (!stored) {
          invalid += 1;
          continue;
        }
        const k = keyString(stored);
        // A replaced mapping moves to the end only when it was removed first, as in the table.
        entries.set(k, { stored, writtenAt: record.t });
      }
    }
    return invalid;
  }

  private validPinhole(entry: unknown, where: string): StoredPinhole | undefined {
    const parsed = storedPinholeSchema.safeParse(entry);
    if (parsed.success) return parsed.data;
    this.logger.warn({ file: where }, `${where} skipped: ${flat(parsed.error)}`);
    return undefined;
  }

  private validMapping(entry: unknown, where: string): StoredMapping | undefined {
    const parsed = storedMappingSchema.safeParse(entry);
    if (parsed.success) return parsed.data;
    this.logger.warn({ file: where }, `${where} skipped: ${flat(parsed.error)}`);
    return undefined;
  }

  /** Moves an unusable file aside (when the directory allows it) and says so; the start goes on without it. */
  private async setAside(path: string, problem: string): Promise<void> {
    this.filesSetAside += 1;
    const aside = `${path}.unreadable-${this.timestamp()}`;
    try {
      await this.fs.rename(path, aside);
      this.logger.error({ file: path, movedTo: aside }, `${path} ${problem}; moved it to ${aside} and starting without what it held`);
    } catch (err) {
      this.logger.error({ file: path }, `${path} ${problem}; could not move it aside either (${firstLine(err)}); starting without what it held`);
    }
  }

  private timestamp(): string {
    return new Date(this.wallClock()).toISOString().replace(/[:.]/g, '-');
  }
}

function storedOf(m: PortMapping, left: number | null, now: number): StoredMapping {
  return {
    protocol: m.protocol,
    externalPort: m.externalPort,
    remoteHost: m.remoteHost,
    internalClient: m.internalClient,
    internalPort: m.internalPort,
    enabled: m.enabled,
    description: m.description,
    leaseSeconds: m.leaseSeconds,
    expiresAtWallMs: left === null ? null : Math.round(now + left),
    createdBy: { address: m.createdBy.address, via: m.createdBy.via },
    ...(m.ownerNonce === undefined ? {} : { ownerNonce: m.ownerNonce }),
  };
}

/** A pinhole as stored; its lease left comes from the same function as a mapping's (the monotonic clock). */
function storedPinholeOf(p: Pinhole, remainingMs: (entry: LeaseHolder) => number | null, now: number): StoredPinhole {
  const left = remainingMs(p) ?? 0;
  return {
    id: p.id,
    remoteHost: p.remoteHost,
    remotePort: p.remotePort,
    internalClient: p.internalClient,
    internalPort: p.internalPort,
    protocol: p.protocol,
    leaseSeconds: p.leaseSeconds,
    expiresAtWallMs: Math.round(now + left),
    createdBy: { address: p.createdBy.address, via: p.createdBy.via },
    ...(p.ownerNonce === undefined ? {} : { ownerNonce: p.ownerNonce }),
  };
}

/**
 * The lease time left at start (of a mapping or a pinhole). The wall clock can be wrong at boot (no real-time clock, NTP not
 * synced yet): a clock behind the write time would stretch the lease, so it is never longer than
 * what was left when written, nor than the lease the client asked for.
 */
function leaseLeft(expiresAtWallMs: number, now: number, writtenAt: number, leaseSeconds: number): number {
  const limits = [expiresAtWallMs - now];
  if (Number.isFinite(writtenAt)) limits.push(expiresAtWallMs - writtenAt);
  if (leaseSeconds > 0) limits.push(leaseSeconds * 1000);
  return Math.min(...limits);
}

function flat(error: z.ZodError): string {
  return z.prettifyError(error).replace(/\n/g, ' ');
}

function firstLine(err: unknown): string {
  return messageOf(err).split('\n')[0]!;
}
