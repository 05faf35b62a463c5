import { randomBytes } from 'node:crypto';
import { link, mkdir, readdir, readFile, readlink, stat, unlink, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { UpnpdError, messageOf } from '../core/errors.js';
import type { Logger } from '../core/logger.js';

/**
 * The file in a directory whose random content names the lock of that directory. The name is not a
 * secret (/proc/net/unix lists it while upnpd runs): another local user may take it first, and is
 * then told apart by the kernel (socketOwner), so that it cannot keep upnpd from starting.
 */
export const LOCK_KEY_FILE = 'upnpd.lock-key';

const KEY = /^[0-9a-f]{32}$/;
/** How long a start waits for the holder of a lock to say who it is. */
const HOLDER_ANSWER_MS = 1_000;

/** A second upnpd on a state or runtime directory that a running one holds. */
export class InstanceLockedError extends UpnpdError {
  constructor(message: string) {
    super('INSTANCE_LOCKED', message);
  }
}

/** What a start locks: the directory and what it is, for messages. */
export interface LockedDirectory {
  readonly dir: string;
  /** e.g. `state directory`: "another upnpd (pid 1234) is running on the state directory /var/lib/upnpd". */
  readonly role: string;
  /** What the other one does besides, after the directory: "and changes this host's firewall". */
  readonly also?: string;
  /** What the admin can do besides stopping that one: "give this one another --state-dir". */
  readonly instead?: string;
}

export interface InstanceLock {
  release(): Promise<void>;
}

/**
 * Locks each directory for this process's life, or throws InstanceLockedError naming the pid of the
 * upnpd that holds one. The lock is a Unix socket in Linux's abstract namespace (one per network
 * namespace: a firewall's scope), named by the directory (lockName): the kernel releases it when the process ends however it ends (kill -9, a
 * power cut), so a crash never leaves a lock behind, and a pid reused by another program does not
 * matter. Taking it is atomic: of two upnpd starting at once, one gets it. The holder answers a
 * connection with its pid, for the message. A directory whose key cannot be read nor created is not
 * locked (logged): the start never fails for the state directory.
 */
export async function lockInstance(directories: readonly LockedDirectory[], logger: Logger): Promise<InstanceLock> {
  const held: Server[] = [];
  const release = () => Promise.all(held.map((server) => new Promise<void>((resolve) => server.close(() => resolve())))).then(() => undefined);
  try {
    for (const locked of directories) {
      let name: string;
      try {
        name = await lockName(locked.dir);
      } catch (err) {
        logger.warn({ dir: locked.dir, err }, `cannot lock the ${locked.role} ${locked.dir} (${messageOf(err)}): a second upnpd on it would not be refused`);
        continue;
      }
      const server = await listenAbstract(name, locked.dir);
      if (server) {
        held.push(server);
        continue;
      }
      // The name is not secret (/proc/net/unix shows it to every local user): who holds it is asked
      // of the kernel. Only a process of this user (root, for the daemon) keeps this one from starting.
      const owner = await socketOwner(name);
      if (owner === undefined || owner.uid !== process.geteuid?.()) {
        const who = owner === undefined ? 'a process this user cannot see' : `pid ${owner.pid}, uid ${owner.uid}`;
        logger.warn(
          { dir: locked.dir, owner },
          `the lock of the ${locked.role} ${locked.dir} is held by ${who}, not an upnpd of this user: starting without it (a second upnpd on it would not be refused)`,
        );
        continue;
      }
      const holder = await holderOf(name);
      const pid = `pid ${owner.pid}`;
      const alias = holder?.dir !== undefined && holder.dir !== locked.dir ? ` (which it names ${holder.dir})` : '';
      throw new InstanceLockedError(
        `another upnpd (${pid}) is running on the ${locked.role} ${locked.dir}${alias}${locked.also ? ` ${locked.also}` : ''}; ` +
          `not starting a second one (stop that one first${locked.instead ? `, or ${locked.instead}` : ''})`,
      );
    }
  } catch (err) {
    await release();
    throw err;
  }
  return { release };
}

/**
 * The abstract socket name of the directory's lock: its key and its device and inode, so that a
 * path that leads to it otherwise (a symbolic link, a bind mount) names the same lock, and a copy
 * of the directory (its key file too) does not.
 */
export async function lockName(dir: string): Promise<string> {
  const key = await lockKey(dir);
  const { dev, ino } = await stat(dir);
  return `\0upnpd/${key}/${dev}:${ino}`;
}

/** The directory's lock key: read, or created once (0600, atomically: of two starts at once, both read the one that was linked first). */
async function lockKey(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, LOCK_KEY_FILE);
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const existing = await readFile(file, 'utf8').then(
      (text) => text.trim(),
      (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return undefined;
        throw err;
      },
    );
    if (existing !== undefined && KEY.test(existing)) return existing;
    // Not a key (a truncated file after a power cut): made again.
    if (existing !== undefined) await unlink(file).catch(() => undefined);
    const temporary = `${file}.tmp-${process.pid}`;
    await writeFile(temporary, `${randomBytes(16).toString('hex')}\n`, { mode: 0o600 });
    try {
      await link(temporary, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    } finally {
      await unlink(temporary).catch(() => undefined);
    }
  }
  throw new Error(`${file} holds no lock key`);
}

/** Listens on the abstract socket `name`; undefined when another process holds it. */
function listenAbstract(name: string, dir: string): Promise<Server | undefined> {
  const server = createServer((socket) => {
    socket.on('error', () => socket.destroy());
    socket.end(`${JSON.stringify({ upnpd: true, pid: process.pid, dir })}\n`);
  });
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' ? resolve(undefined) : reject(err)));
    server.listen({ path: name }, () => {
      // The lock does not keep the process alive: it ends with the daemon.
      server.unref();
      resolve(server);
    });
  });
}

/**
 * The process holding the listening abstract socket `name`, as the kernel tells it: its inode in
 * /proc/net/unix (abstract names are shown with `@` for each NUL, trailing ones included), then the
 * process with a descriptor on that inode. Undefined when none is found (one of another user, for
 * a start that is not root). Only read when a lock is taken already.
 */
async function socketOwner(name: string): Promise<{ pid: number; uid: number } | undefined> {
  const shown = `@${name.slice(1)}`;
  const table = await readFile('/proc/net/unix', 'latin1').catch(() => '');
  const inode = table
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .find((fields) => fields[7] !== undefined && fields[7].replace(/@+$/, '') === shown)?.[6];
  if (inode === undefined) return undefined;
  const target = `socket:[${inode}]`;
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const fds = await readdir(`/proc/${entry}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      if ((await readlink(`/proc/${entry}/fd/${fd}`).catch(() => '')) !== target) continue;
      const status = await readFile(`/proc/${entry}/status`, 'utf8').catch(() => '');
      // Uid: real, effective, saved, filesystem.
      const uid = /^Uid:\s+\d+\s+(\d+)/m.exec(status)?.[1];
      return uid === undefined ? undefined : { pid: Number(entry), uid: Number(uid) };
    }
  }
  return undefined;
}

/** The directory's path the holder of the lock `name` answers with (and the pid it says); undefined when it does not say (in time). */
function holderOf(name: string): Promise<{ pid: number; dir?: string } | undefined> {
  return new Promise((resolve) => {
    let answer = '';
    const probe = createConnection(name);
    const done = () => {
      probe.destroy();
      try {
        const { upnpd, pid, dir } = JSON.parse(answer) as { upnpd?: unknown; pid?: unknown; dir?: unknown };
        resolve(upnpd === true && Number.isInteger(pid) ? { pid: pid as number, ...(typeof dir === 'string' && { dir }) } : undefined);
      } catch {
        resolve(undefined);
      }
    };
    probe.setTimeout(HOLDER_ANSWER_MS, done);
    probe.setEncoding('utf8');
    probe.on('data', (chunk: string) => {
      answer += chunk;
      if (answer.length > 1024) done();
    });
    probe.once('end', done);
    probe.once('error', done);
  });
}
