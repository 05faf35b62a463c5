import 'reflect-metadata';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { trimMemoryWhenQuiet } from '../../core/daemon.js';
import { makeMappings } from '../support/fakes.js';

const request = (externalPort: number) => ({ remoteHost: '', externalPort, protocol: 'TCP' as const, internalClient: '192.168.77.10', internalPort: externalPort, enabled: true, description: '', leaseSeconds: 60 });
const requester = { address: '192.168.77.10', via: 'test' };
const globals = globalThis as { gc?: unknown };

describe('the daemon gives memory back once the table is quiet after changes', () => {
  const original = globals.gc;
  afterEach(() => {
    globals.gc = original;
  });

  it('runs one memory-reducing collection 5 s after the last of a burst of changes', async () => {
    const gc = vi.fn();
    globals.gc = gc;
    const { mappings, clock } = makeMappings();
    const stop = trimMemoryWhenQuiet(mappings, clock);
    await mappings.add(request(1), requester);
    await clock.advance(4_000);
    await mappings.add(request(2), requester);
    await clock.advance(4_000);
    expect(gc).not.toHaveBeenCalled();
    await clock.advance(1_000);
    expect(gc).toHaveBeenCalledTimes(1);
    expect(gc).toHaveBeenCalledWith({ type: 'major', execution: 'sync', flavor: 'last-resort' });
    stop();
    await mappings.add(request(3), requester);
    await clock.advance(10_000);
    expect(gc).toHaveBeenCalledTimes(1);
  });

  it('does nothing when gc is not exposed', async () => {
    delete globals.gc;
    const { mappings, clock } = makeMappings();
    trimMemoryWhenQuiet(mappings, clock);
    await mappings.add(request(1), requester);
    await expect(clock.advance(10_000)).resolves.toBeUndefined();
  });
});
