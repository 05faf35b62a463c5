import type { LogDestination } from 'upnpd';

/** A syslog transport: started at provision, closed at cleanup, never throwing from `write`. */
export interface SyslogDestination extends LogDestination {
  /** Opens the transport. Throws only when it can never work (e.g. its helper program is missing). */
  start(): Promise<void>;
  /** Flushes (within a bounded time), then releases sockets and processes. Idempotent. */
  close(): Promise<void>;
}

/** How long flush and close wait for a transport before giving up on what is still queued. */
export const SETTLE_TIMEOUT_MS = 2_000;

/** Resolves when `settled` does or after `ms`, whichever comes first; the timer never keeps the process alive. */
export function settleWithin(settled: Promise<unknown>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    timer.unref();
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    settled.then(done, done);
  });
}
