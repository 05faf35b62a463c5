import 'reflect-metadata';
import { describe, expect, it } from 'vitest';
import type { ResolvedConfig } from '../../core/config/schema.js';
import type { Logger } from '../../core/logger.js';
import { silentLogger } from '../../core/logger.js';
import { describeBackendConformance } from '../../core/testing/index.js';
import { DryRunBackend, dryRunOptionsSchema } from '../../plugins/dry-run/index.js';

const config = { wan: 'eth0' } as ResolvedConfig;

function recordingLogger(lines: string[]): Logger {
  const log = ((obj: unknown, msg?: string) => void lines.push(typeof obj === 'string' ? obj : (msg ?? ''))) as Logger['info'];
  return { ...silentLogger, info: log, child: () => recordingLogger(lines) };
}

for (const dialect of ['iptables', 'nftables'] as const) {
  describeBackendConformance(`dry-run (${dialect} dialect)`, async () => ({
    backend: new DryRunBackend(dryRunOptionsSchema.parse({ dialect }), silentLogger, config),
    teardown: async () => {},
  }));
}

describe('the dry-run backend shows what the real backend would apply', () => {
  const mapping = { remoteHost: '', externalPort: 8080, protocol: 'TCP' as const, internalClient: '192.168.1.118', internalPort: 80 };

  it('logs the iptables commands for each change set', async () => {
    const lines: string[] = [];
    const backend = new DryRunBackend(dryRunOptionsSchema.parse({}), recordingLogger(lines), config);
    await backend.init();
    await backend.apply({ remove: [], add: [mapping] });
    const shown = lines.at(-1)!;
    expect(shown).toContain('iptables -t nat -A UPNPD-PREROUTING -i eth0 -p tcp -m tcp --dport 8080');
    expect(shown).toContain('-j DNAT --to-destination 192.168.1.118:80');
    expect(shown).toContain('iptables -t filter -A UPNPD-FORWARD -d 192.168.1.118/32 -i eth0 -p tcp -m tcp --dport 80');
  });

  it('logs the nft script in the nftables dialect, with the imitated backend options', async () => {
    const lines: string[] = [];
    const backend = new DryRunBackend(dryRunOptionsSchema.parse({ dialect: 'nftables', nftables: { table: 'gw' } }), recordingLogger(lines), config);
    await backend.init();
    await backend.apply({ remove: [], add: [mapping] });
    expect(lines.at(-1)).toMatch(/add element inet gw dnat-any \{ tcp \. 8080 : 192\.168\.1\.118 \. 80 \}/);
  });
});
