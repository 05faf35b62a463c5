import type { Clock } from '../../core/clock.js';
import { BackendError, toUpnpFault } from '../../core/errors.js';
import { silentLogger, type LogFn, type Logger } from '../../core/logger.js';
import { keyString, ruleOf, type ChangeSet, type RuleSpec } from '../../core/mapping/types.js';
import { MappingService, type LeasePolicy } from '../../core/mapping/service.js';
import { PluginDriver } from '../../core/plugins/driver.js';
import type { BackendCapabilities, FirewallBackend, PinholeBackend, Plugin } from '../../core/plugins/types.js';
import { pinholeRuleOf, pinholeRuleString, type PinholeRule } from '../../core/mapping/pinhole.js';

/** A clock the test moves by hand; timers fire when `advance` passes them. */
export class ManualClock implements Clock {
  private time = 1_000;
  private timers = new Map<number, { at: number; callback: () => void }>();
  private nextId = 1;

  now(): number {
    return this.time;
  }
  setTimer(callback: () => void, delayMs: number): unknown {
    const id = this.nextId++;
    this.timers.set(id, { at: this.time + Math.max(0, delayMs), callback });
    return id;
  }
  clearTimer(handle: unknown): void {
    this.timers.delete(handle as number);
  }
  /** Moves time forward, firing due timers in time order and letting the work they start finish. */
  async advance(ms: number): Promise<void> {
    const end = this.time + ms;
    for (let guard = 0; guard < 10_000; guard++) {
      const due = [...this.timers.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.time = Math.max(this.time, due[1].at);
      due[1].callback();
      await settle();
    }
    this.time = end;
  }
}

/**
 * An in-memory backend that records every change set and can be told to fail. It opens IPv6
 * pinholes unless built with `{ pinholes: false }` (a backend that declares none).
 */
export class RecordingBackend implements FirewallBackend {
  readonly installed = new Map<string, RuleSpec>();
  /** Installed pinhole rules by their identity (pinholeRuleString). */
  readonly installedPinholes = new Map<string, PinholeRule>();
  /** Packets "the kernel" counted, by pinhole identity (set by tests). */
  readonly pinholePackets = new Map<string, number>();
  readonly applied: ChangeSet[] = [];
  failNext = 0;
  failWhen: ((changes: ChangeSet) => boolean) | undefined;
  readonly pinholes: PinholeBackend | undefined;

  constructor(options: { readonly pinholes?: boolean } = {}) {
    this.pinholes =
      options.pinholes === false
        ? undefined
        : {
            list: () => Promise.resolve([...this.installedPinholes.values()]),
            packets: (rule) => Promise.resolve(this.pinholePackets.get(pinholeRuleString(rule)) ?? 0),
          };
  }

  probe(): Promise<BackendCapabilities> {
    return Promise.resolve({ dialect: 'memory', remoteHost: true, details: {} });
  }
  async init() {}
  apply(changes: ChangeSet): Promise<void> {
    if (this.failNext > 0 || this.failWhen?.(changes)) {
      if (this.failNext > 0) this.failNext--;
      return Promise.reject(new BackendError('injected failure'));
    }
    for (const r of changes.remove) if (!this.installed.has(keyString(r))) return Promise.reject(new BackendError(`not installed: ${keyString(r)}`));
    if (changes.pinholes && !this.pinholes) return Promise.reject(new BackendError('this backend has no pinholes'));
    for (const r of changes.pinholes?.remove ?? [])
      if (!this.installedPinholes.has(pinholeRuleString(r))) return Promise.reject(new BackendError(`pinhole not installed: ${pinholeRuleString(r)}`));
    for (const r of changes.remove) this.installed.delete(keyString(r));
    for (const r of changes.add) this.installed.set(keyString(r), ruleOf(r));
    for (const r of changes.pinholes?.remove ?? []) this.installedPinholes.delete(pinholeRuleString(r));
    for (const r of changes.pinholes?.add ?? []) this.installedPinholes.set(pinholeRuleString(r), pinholeRuleOf(r));
    this.applied.push(changes);
    return Promise.resolve();
  }
  list(): Promise<RuleSpec[]> {
    return Promise.resolve([...this.installed.values()]);
  }
  shutdown(): Promise<void> {
    this.installed.clear();
    this.installedPinholes.clear();
    return Promise.resolve();
  }
  render(changes: ChangeSet): string {
    return [...changes.remove.map((r) => `remove ${keyString(r)}`), ...changes.add.map((r) => `add ${keyString(r)}`)].join('\n');
  }
}

export function backendPluginFor(backend: FirewallBackend, name = 'memory'): Plugin {
  return { name, firewall: backend };
}

export const DEFAULT_LEASE: LeasePolicy = { defaultSeconds: 3600, maxSeconds: 604800, allowPermanent: true };

export function makeMappings(options: { plugins?: Plugin[]; lease?: LeasePolicy; clock?: ManualClock; backend?: RecordingBackend } = {}) {
  const backend = options.backend ?? new RecordingBackend();
  const clock = options.clock ?? new ManualClock();
  const driver = new PluginDriver([backendPluginFor(backend), ...(options.plugins ?? [])], silentLogger);
  const mappings = new MappingService(driver, driver.firewall, clock, options.lease ?? DEFAULT_LEASE, silentLogger);
  return { backend, clock, driver, mappings };
}

/** Lets queued work (setImmediate-started batches, notifications) run. */
export async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** A logger that keeps what it was told, by level (`level` as the daemon's root logger has one). */
export class RecordingLogger implements Logger {
  readonly level = 'info';
  readonly lines: Array<{ level: string; message: string }> = [];
  readonly fatal = this.record('fatal');
  readonly error = this.record('error');
  readonly warn = this.record('warn');
  readonly info = this.record('info');
  readonly debug = this.record('debug');
  readonly trace = this.record('trace');

  child(): Logger {
    return this;
  }

  /** The messages, in order. */
  messages(): string[] {
    return this.lines.map((line) => line.message);
  }

  private record(level: string): LogFn {
    return (a: unknown, b?: string) => {
      this.lines.push({ level, message: typeof a === 'string' ? a : (b ?? '') });
    };
  }
}

/** The UPnP fault code a change is refused with (fails the test when it is not refused). */
export async function faultOf(promise: Promise<unknown>): Promise<number> {
  try {
    await promise;
  } catch (err) {
    return toUpnpFault(err).upnpCode;
  }
  throw new Error('expected a fault');
}
