import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { startIgd } from './fixture.js';

/**
 * A LAN change the UPnP front-end cannot take in place (its LAN interfaces, hence its UDNs,
 * changed) starts it again (core/daemon.ts serveChangedLan); with `httpPort` 0 the new one listens
 * on the port of the old one, so that the URLs clients cached stay valid.
 */
describe('the HTTP port carried over to a replacing front-end', () => {
  it('listens on the preferred port when it is free', async () => {
    const first = await startIgd();
    const port = first.frontEnd.httpPort;
    await first.close();
    const second = await startIgd({ preferredHttpPort: port });
    try {
      expect(second.frontEnd.httpPort).toBe(port);
    } finally {
      await second.close();
    }
  });

  it('listens on another free port when the preferred one is taken', async () => {
    const squatter = createServer();
    await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
    const taken = (squatter.address() as { port: number }).port;
    try {
      const igd = await startIgd({ preferredHttpPort: taken });
      try {
        expect(igd.frontEnd.httpPort).not.toBe(taken);
        expect(igd.frontEnd.httpPort).toBeGreaterThan(0);
      } finally {
        await igd.close();
      }
    } finally {
      squatter.close();
    }
  });
});
