import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readdirSync, readlinkSync } from 'node:fs';
import { APPEND_HANDLE_IDLE_MS, nodeStateFs } from '../../core/mapping/state-fs.js';

/** Whether this process has `path` open. */
const isOpen = (path: string) =>
  readdirSync('/proc/self/fd').some((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === path;
    } catch {
      return false;
    }
  });

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'upnpd-state-fs-'));
});
afterEach(async () => {
  for (const name of ['journal', 'moved']) await nodeStateFs.close?.(join(dir, name));
  rmSync(dir, { recursive: true, force: true });
});

describe('nodeStateFs appends through a file kept open', () => {
  it('appends in order to a file it creates with mode 0600', async () => {
    const path = join(dir, 'journal');
    await nodeStateFs.append(path, 'one\n');
    await nodeStateFs.append(path, 'two ünïcödé\n');
    expect(readFileSync(path, 'utf8')).toBe('one\ntwo ünïcödé\n');
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  it('appends to the new file after the path is replaced (a compaction), not to the old one it had open', async () => {
    const path = join(dir, 'journal');
    await nodeStateFs.append(path, 'before\n');
    await nodeStateFs.replace(path, '');
    await nodeStateFs.append(path, 'after\n');
    expect(readFileSync(path, 'utf8')).toBe('after\n');
  });

  it('follows renames and closing: the next append opens the file at the path again', async () => {
    const path = join(dir, 'journal');
    await nodeStateFs.append(path, 'a\n');
    await nodeStateFs.rename(path, join(dir, 'moved'));
    await nodeStateFs.append(path, 'b\n');
    await nodeStateFs.close?.(path);
    await nodeStateFs.append(path, 'c\n');
    expect(readFileSync(join(dir, 'moved'), 'utf8')).toBe('a\n');
    expect(readFileSync(path, 'utf8')).toBe('b\nc\n');
  });

  it('keeps the file open while appends come, and closes it once they stop (so that the filesystem can be remounted read-only)', async () => {
    const path = join(dir, 'journal');
    for (let i = 0; i < 5; i += 1) {
      await nodeStateFs.append(path, `${i}\n`);
      await new Promise((resolve) => setTimeout(resolve, APPEND_HANDLE_IDLE_MS / 5));
      expect(isOpen(path)).toBe(true);
    }
    await new Promise((resolve) => setTimeout(resolve, APPEND_HANDLE_IDLE_MS + 300));
    expect(isOpen(path)).toBe(false);
    await nodeStateFs.append(path, 'again\n');
    expect(readFileSync(path, 'utf8')).toBe('0\n1\n2\n3\n4\nagain\n');
  });

  it('fails an append to the file it keeps open once that file was removed (its directory deleted), instead of writing to no path', async () => {
    const path = join(dir, 'journal');
    await nodeStateFs.append(path, 'one\n');
    rmSync(path);
    await expect(nodeStateFs.append(path, 'two\n')).rejects.toMatchObject({ code: 'ENOENT' });
    // Not kept: the next append creates the file again.
    await nodeStateFs.append(path, 'three\n');
    expect(readFileSync(path, 'utf8')).toBe('three\n');
  });

  it('fails an append it cannot make, and appends again once it can', async () => {
    const path = join(dir, 'missing-directory', 'journal');
    await expect(nodeStateFs.append(path, 'x\n')).rejects.toMatchObject({ code: 'ENOENT' });
    await nodeStateFs.mkdir(join(dir, 'missing-directory'));
    await nodeStateFs.append(path, 'y\n');
    expect(readFileSync(path, 'utf8')).toBe('y\n');
    await nodeStateFs.close?.(path);
  });
});
