import { constants } from 'node:fs';
import { copyFile, mkdir, open, readFile, rename, unlink, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * The file operations the mapping state needs, each durable when it resolves (fsync'ed, and the
 * directory too when an entry is created or renamed). Injectable, so that tests can record the
 * order of calls and make them fail (ENOSPC, EROFS, EIO) without a full disk.
 */
export interface StateFs {
  /** Creates the directory (mode 0700) if missing. */
  mkdir(directory: string): Promise<void>;
  /** The file's text; undefined when it does not exist. */
  readText(path: string): Promise<string | undefined>;
  /** Replaces the file atomically: a temporary file written and fsync'ed, renamed over it, the directory fsync'ed. */
  replace(path: string, text: string): Promise<void>;
  /** Appends to the file (created 0600 if missing, the directory fsync'ed then) and fsyncs it before resolving. */
  append(path: string, text: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  copy(from: string, to: string): Promise<void>;
  /** Closes what is kept open between appends to `path` (at shutdown); a later append opens it again. */
  close?(path: string): Promise<void>;
}

/**
 * A file appended to is kept open while appends keep coming: a journal line then costs a write
 * and an fdatasync, not an open, a stat and a close as well (bench: one client's add/delete cycles,
 * 78 -> 123 a second). It is closed after this long without an append, so that a quiet daemon holds
 * no file open for writing (`mount -o remount,ro` of the state directory fails while one is).
 */
export const APPEND_HANDLE_IDLE_MS = 500;

interface KeptHandle {
  readonly handle: Promise<FileHandle>;
  readonly idle: NodeJS.Timeout;
}

/** Replacing or renaming a path closes its handle first, so that the next append opens the new file. */
const appendHandles = new Map<string, KeptHandle>();

/** The handle `append` writes `path` through: kept, or opened (and, when that creates the file, its directory fsync'ed). */
function appendHandle(path: string): Promise<FileHandle> {
  const kept = appendHandles.get(path);
  if (kept) {
    kept.idle.refresh();
    return kept.handle;
  }
  const handle = openForAppend(path);
  const idle = setTimeout(() => void closeAppendHandle(path, handle), APPEND_HANDLE_IDLE_MS).unref();
  appendHandles.set(path, { handle, idle });
  // A failed open is not kept: the next append tries again.
  handle.catch(() => void closeAppendHandle(path, handle));
  return handle;
}

async function openForAppend(path: string): Promise<FileHandle> {
  const flags = constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT;
  try {
    // Created here: its directory entry must be durable too, before anything appended counts as on disk.
    const created = await open(path, flags | constants.O_EXCL, 0o600);
    try {
      await syncDirectory(dirname(path));
    } catch (err) {
      await created.close();
      throw err;
    }
    return created;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return open(path, flags, 0o600);
  }
}

/**
 * Closes the kept handle of `path` (only `which`, when given), if any: before the path is replaced
 * or renamed, after a failed write, when idle. An append still writing through it has its own
 * reference and finishes first: FileHandle.close() waits for the operations in progress.
 */
async function closeAppendHandle(path: string, which?: Promise<FileHandle>): Promise<void> {
  const kept = appendHandles.get(path);
  if (!kept || (which && kept.handle !== which)) return;
  appendHandles.delete(path);
  clearTimeout(kept.idle);
  await kept.handle.then((h) => h.close()).catch(() => undefined);
}

/** StateFs on node:fs. */
export const nodeStateFs: StateFs = {
  async mkdir(directory) {
    await mkdir(directory, { recursive: true, mode: 0o700 });
  },
  async readText(path) {
    try {
      return await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  },
  async replace(path, text) {
    await closeAppendHandle(path);
    const temporary = `${path}.tmp-${process.pid}`;
    const handle = await open(temporary, 'w', 0o600);
    try {
      try {
        await handle.writeFile(text, 'utf8');
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temporary, path);
    } catch (err) {
      // A half-written temporary file would hold the space a full disk needs to recover.
      await unlink(temporary).catch(() => undefined);
      throw err;
    }
    await syncDirectory(dirname(path));
  },
  async append(path, text) {
    const kept = appendHandle(path);
    try {
      const handle = await kept;
      // Removed while kept open (the state directory deleted, the journal replaced): what is written
      // through it is on no path a restart reads. Refused, so that the journal writes its state whole.
      if ((await handle.stat()).nlink === 0) throw Object.assign(new Error(`${path} was removed while upnpd had it open`), { code: 'ENOENT' });
      const data = Buffer.from(text, 'utf8');
      // O_APPEND: each write lands at the end; a short write (a full disk) continues where it stopped.
      for (let written = 0; written < data.length;) written += (await handle.write(data, written, data.length - written)).bytesWritten;
      // fdatasync: the data and the size, which is what a replay needs.
      await handle.datasync();
    } catch (err) {
      // The file may end in a partial line now: the next append opens it afresh (after the journal rewrote it whole).
      await closeAppendHandle(path, kept);
      throw err;
    }
  },
  async rename(from, to) {
    await Promise.all([closeAppendHandle(from), closeAppendHandle(to)]);
    await rename(from, to);
  },
  copy: (from, to) => copyFile(from, to),
  close: (path) => closeAppendHandle(path),
};

/** fsync of a directory, so that a created or renamed entry survives a power cut. */
async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
