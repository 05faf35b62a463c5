import type * as FsPromises from 'node:fs/promises';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';

// The control socket must be 0600 from the moment it exists, not only once a chmod after listen()
// has run: in a runtime directory others may enter, another user could connect in between. The
// chmod is made a no-op here, so what is checked is the mode the socket was created with.
vi.mock('node:fs/promises', async (importOriginal) => ({
  ...(await importOriginal<typeof FsPromises>()),
  chmod: () => Promise.resolve(),
}));

const { startControlServer } = await import('../../app/control/server.js');
const { silentLogger } = await import('../../core/logger.js');

const scratch = mkdtempSync(join(tmpdir(), 'upnpd-socket-mode-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('the control socket', () => {
  it('is created with mode 0600 whatever the umask, before any chmod', async () => {
    const umask = process.umask(0);
    try {
      const server = await startControlServer({} as never, join(scratch, 'run'), silentLogger);
      expect(server).toBeDefined();
      expect(process.umask(0), 'the umask is given back').toBe(0);
      try {
        expect(statSync(server!.path).mode & 0o777).toBe(0o600);
      } finally {
        await server!.close();
      }
    } finally {
      process.umask(umask);
    }
  });
});
