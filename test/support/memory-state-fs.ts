import type { StateFs } from '../../core/mapping/state-fs.js';

/** An errno-style error, as node:fs raises it. */
export function fsError(code: 'ENOSPC' | 'EROFS' | 'EIO' | 'EACCES', path: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: injected, ${path}`), { code });
}

/**
 * A StateFs in memory: `files` holds what is durable (what a power cut would leave). Every call
 * is recorded in order; `failWith` makes each write fail with an errno code; `holdAppends` keeps
 * appends pending until `releaseAppends`, to see what happens before a write is durable.
 */
export class MemoryStateFs implements StateFs {
  readonly files = new Map<string, string>();
  readonly calls: string[] = [];
  failWith: 'ENOSPC' | 'EROFS' | 'EIO' | undefined;
  holdAppends = false;
  private held: Array<() => void> = [];

  mkdir(directory: string): Promise<void> {
    this.calls.push(`mkdir ${directory}`);
    return Promise.resolve();
  }

  readText(path: string): Promise<string | undefined> {
    this.calls.push(`read ${path}`);
    return Promise.resolve(this.files.get(path));
  }

  async replace(path: string, text: string): Promise<void> {
    this.calls.push(`replace ${path}`);
    this.check(path);
    this.files.set(path, text);
    await Promise.resolve();
  }

  async append(path: string, text: string): Promise<void> {
    this.calls.push(`append ${path}`);
    this.check(path);
    if (this.holdAppends) await new Promise<void>((resolve) => this.held.push(resolve));
    this.files.set(path, (this.files.get(path) ?? '') + text);
    this.calls.push(`synced ${path}`);
  }

  rename(from: string, to: string): Promise<void> {
    this.calls.push(`rename ${from} ${to}`);
    this.check(to);
    const text = this.files.get(from);
    if (text === undefined) return Promise.reject(Object.assign(new Error(`ENOENT: ${from}`), { code: 'ENOENT' }));
    this.files.delete(from);
    this.files.set(to, text);
    return Promise.resolve();
  }

  copy(from: string, to: string): Promise<void> {
    this.calls.push(`copy ${from} ${to}`);
    this.check(to);
    this.files.set(to, this.files.get(from) ?? '');
    return Promise.resolve();
  }

  /** Lets the held appends finish (they become durable in order). */
  releaseAppends(): void {
    const held = this.held;
    this.held = [];
    for (const resolve of held) resolve();
  }

  get pendingAppends(): number {
    return this.held.length;
  }

  private check(path: string): void {
    if (this.failWith) throw fsError(this.failWith, path);
  }
}
