import 'reflect-metadata';
import { describe, expect, it } from 'vitest';
import type { Logger } from '../../core/logger.js';
import { silentLogger } from '../../core/logger.js';
import type { BackendSpec } from '../../core/plugins/types.js';
import { DryRunBackend, dryRun } from '../../plugins/dry-run/index.js';
import { iptables } from '../../plugins/iptables/index.js';
import { nftables } from '../../plugins/nftables/index.js';
import { backendFromSpec, describeBackendConformance } from 'upnpd/testing';
import { RecordingBackend } from '../support/fakes.js';

/** A command runner that must never be used: dry-run runs no command, also not the imitated backend's. */
const noCommands = {
  run: () => Promise.reject(new Error('dry-run ran a command')),
  start: () => {
    throw new Error('dry-run started a command');
  },
};

function recordingLogger(lines: string[]): Logger {
  const log = ((obj: unknown, msg?: string) => void lines.push(typeof obj === 'string' ? obj : (msg ?? ''))) as Logger['info'];
  return { ...silentLogger, info: log, child: () => recordingLogger(lines) };
}

function dryRunOf(imitate: BackendSpec | undefined, lines: string[] = []) {
  const spec = dryRun({ imitate });
  return backendFromSpec(spec, { commands: noCommands, config: { wan: 'eth0' }, logger: recordingLogger(lines) });
}

for (const imitated of [iptables(), nftables(), undefined]) {
  describeBackendConformance(`dry-run (imitating ${imitated?.name ?? 'nothing'})`, () =>
    Promise.resolve({ backend: dryRunOf(imitated), teardown: async () => {} }),
  );
}

describe('the dry-run backend shows what the imitated backend would apply', () => {
  const mapping = { remoteHost: '', externalPort: 8080, protocol: 'TCP' as const, internalClient: '192.168.1.118', internalPort: 80 };

  it('logs the iptables commands for each change set', async () => {
    const lines: string[] = [];
    const backend = dryRunOf(iptables(), lines);
    await backend.init();
    await backend.apply({ remove: [], add: [mapping] });
    const shown = lines.at(-1)!;
    expect(shown).toContain('iptables -t nat -A UPNPD-PREROUTING.t07e -i eth0 -p tcp -m tcp --dport 8080');
    expect(shown).toContain('-j DNAT --to-destination 192.168.1.118:80');
    expect(shown).toContain('iptables -t filter -A UPNPD-FORWARD.t001 -d 192.168.1.118/32 -i eth0 -p tcp -m tcp --dport 80');
  });

  it('logs the nft script with the imitated backend options', async () => {
    const lines: string[] = [];
    const backend = dryRunOf(nftables({ table: 'gw' }), lines);
    await backend.init();
    await backend.apply({ remove: [], add: [mapping] });
    expect(lines.at(-1)).toMatch(/add element inet gw dnat-any \{ tcp \. 8080 : 192\.168\.1\.118 \. 80 \}/);
  });

  it("imitates any backend through its render, never calling the imitated backend's probe, init, apply or shutdown", async () => {
    const imitated = new RecordingBackend();
    const calls: string[] = [];
    for (const method of ['probe', 'init', 'apply', 'list', 'shutdown'] as const) {
      imitated[method] = () => {
        calls.push(method);
        return Promise.reject<never>(new Error(`${method} called`));
      };
    }
    const lines: string[] = [];
    const backend = new DryRunBackend({ name: 'recording', backend: imitated }, recordingLogger(lines));
    await backend.probe();
    await backend.init();
    await backend.apply({ remove: [], add: [mapping] });
    await backend.apply({ remove: [mapping], add: [] });
    expect(await backend.list()).toEqual([]);
    await backend.shutdown();
    expect(calls).toEqual([]);
    expect(lines).toContain('dry-run: the recording backend would apply:\nadd TCP/8080/');
    expect(lines).toContain('dry-run: the recording backend would apply:\nremove TCP/8080/');
  });
});
