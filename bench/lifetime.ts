/**
 * For the helper processes the harness starts inside namespaces (STUN server, load generator,
 * data-plane listener): they stop on SIGTERM/SIGINT, and on their own after `lifetimeMs`, so that
 * none outlives a harness that died before it could stop them.
 */
export function stopOnSignalOrAfter(lifetimeMs: number, stop: () => Promise<void> | void): void {
  let stopping = false;
  const finish = (code: number) => {
    if (stopping) return;
    stopping = true;
    void Promise.resolve()
      .then(stop)
      .finally(() => process.exit(code));
  };
  // Exit status 3 tells the harness the helper ran out of time rather than being stopped.
  setTimeout(() => finish(3), lifetimeMs).unref();
  process.on('SIGTERM', () => finish(0));
  process.on('SIGINT', () => finish(0));
}
