import { constants } from 'node:fs';
import { copyFile, mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
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
  /** Appends to the file (created 0600 if missing) and fsyncs it before resolving. */
  append(path: string, text: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  copy(from: string, to: string): Promise<void>;
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
    const handle = await open(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, 0o600);
    try {
      await handle.writeFile(text, 'utf8');
      // fdatasync: the data and the size, which is what a replay needs.
      await handle.datasync();
    } finally {
      await handle.close();
    }
  },
  rename: (from, to) => rename(from, to),
  copy: (from, to) => copyFile(from, to),
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
