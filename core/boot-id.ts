import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { messageOf } from './errors.js';
import type { Logger } from './logger.js';

/** BOOTID.UPNP.ORG is a 31-bit value (UDA 1.1 §1.2). */
const MAX_BOOT_ID = 2 ** 31 - 1;

/** BOOTID from the wall clock: increases from one start to the next as long as the clock is right. */
export function clockBootId(wallMs: number = Date.now()): number {
  return Math.floor(wallMs / 1000) % MAX_BOOT_ID;
}

/**
 * The BOOTID for this start, kept in the state directory (`boot-id`): the clock's value, or one
 * more than the last start's where that is higher. UDA 1.1 asks that BOOTID increase with every
 * start; a gateway without a real-time clock boots at 1970 until NTP answers, which would make a
 * clock-only BOOTID go backwards, and control points would not see the restart. A file that
 * cannot be read or written falls back to the clock (logged), never stopping the start.
 */
export async function persistedBootId(stateDir: string, logger: Logger, wallMs: number = Date.now()): Promise<number> {
  const file = join(stateDir, 'boot-id');
  let previous: number | undefined;
  try {
    const text = (await readFile(file, 'utf8')).trim();
    if (/^\d{1,10}$/.test(text) && Number(text) <= MAX_BOOT_ID) previous = Number(text);
    else logger.warn({ file }, `${file} does not hold a BOOTID; using the clock`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') logger.warn({ err, file }, `cannot read ${file}: ${messageOf(err)}`);
  }
  const fromClock = clockBootId(wallMs);
  const bootId = previous === undefined || fromClock > previous ? fromClock : previous >= MAX_BOOT_ID ? 0 : previous + 1;
  try {
    await writeFile(file, `${bootId}\n`, { mode: 0o600 });
  } catch (err) {
    logger.warn({ err, file }, `cannot save the BOOTID to ${file}: ${messageOf(err)}`);
  }
  return bootId;
}
