import 'reflect-metadata';
import { writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { statusPage } from '../../app/admin/page.js';
import { assemblePlugins } from '../../app/compose.js';
import { configSchema, type ResolvedConfig, type UserConfig } from '../../core/config/schema.js';
import { Daemon } from '../../core/daemon.js';
import type { FrontEnd, FrontEndContext, LanAddresses } from '../../core/front-end.js';
import { silentLogger } from '../../core/logger.js';
import { MappingStateFile } from '../../core/mapping/state-file.js';
import type { InterfaceAddress } from '../../core/net/network-info.js';
import type { Plugin } from '../../core/plugins/types.js';
import { natPmp } from '../../plugins/nat-pmp/index.js';
import { backendPluginFor, RecordingBackend, RecordingLogger } from '../support/fakes.js';
import { LoopbackNetwork } from '../support/loopback-network.js';
import { useTempDir } from '../support/temp-dir.js';

const LAN_A: InterfaceAddress = { interface: 'lo', address: '127.0.0.1', prefixLength: 8 };
const LAN_B: InterfaceAddress = { interface: 'lo', address: '127.0.0.1', prefixLength: 16 };

/**
 * A third-party front-end plugin that records what it was given and what happened to it; with
 * `updateLan`, its front-ends take LAN changes in place (or refuse them, answering false).
 */
function recordingFrontEnd(updateLan?: { readonly inPlace: boolean }) {
  const built: FrontEndContext[] = [];
  const events: string[] = [];
  const plugin: Plugin = {
    name: 'recording-front-end',
    frontEnd: (context) => {
      built.push(context);
      const index = built.length;
      const frontEnd: FrontEnd = {
        name: 'recording',
        start: () => Promise.resolve(void events.push(`start ${index}`)),
        stop: () => Promise.resolve(void events.push(`stop ${index}`)),
        ...(updateLan && {
          updateLan: ({ lan }: LanAddresses) => {
            events.push(`update ${index} ${lan.map((a) => `${a.address}/${a.prefixLength}`).join(',')}`);
            return Promise.resolve(updateLan.inPlace);
          },
        }),
      };
      return frontEnd;
    },
  };
  return { plugin, built, events };
}

function config(user: UserConfig): ResolvedConfig {
  return {
    ...configSchema.parse({ lan: ['lo'], externalIp: '203.0.113.1', ...user }),
    source: '/etc/upnpd/upnpd.config.js',
    lanFromCommandLine: true,
    plugins: [],
  };
}

describe('the front-end slot (Plugin.frontEnd)', () => {
  it('builds a plugin front-end after provisioning with the mapping operations, LAN, limits and external address, and stops it at shutdown', async () => {
    const recording = recordingFrontEnd();
    const backend = new RecordingBackend();
    const daemon = await Daemon.start(config({ upnp: { enabled: false } }), {
      logger: new RecordingLogger(),
      plugins: [backendPluginFor(backend), recording.plugin],
      lan: [LAN_A],
      network: new LoopbackNetwork([LAN_A]),
    });
    try {
      expect(daemon.frontEnds.map((f) => f.name)).toEqual(['recording']);
      const [context] = recording.built;
      expect(context!.lan).toEqual([LAN_A]);
      expect(context!.external.externalAddress).toBe('203.0.113.1');
      // Without the UPnP front-end, status and the admin page still show the external address.
      expect(daemon.status().externalAddress).toBe('203.0.113.1');
      expect(statusPage(daemon.status(), { mappings: [], pinholes: [] }, 't')).toContain('external address 203.0.113.1.');
      expect(context!.limits).toBe(daemon.limits);
      const mapping = await context!.mappings.add(
        {
          remoteHost: '',
          externalPort: 4000,
          protocol: 'UDP',
          internalClient: '127.0.0.1',
          internalPort: 4000,
          enabled: true,
          description: 'x',
          leaseSeconds: 60,
        },
        { address: '127.0.0.1', via: 'recording' },
      );
      expect(daemon.mappings.get(mapping)).toBe(mapping);
      expect(backend.installed.size).toBe(1);
    } finally {
      await daemon.stop();
    }
    expect(recording.events).toEqual(['start 1', 'stop 1']);
  });
});

describe('what a front-end is told of the state kept before the start (restoredState)', () => {
  const dir = useTempDir('upnpd-restored-');
  async function restoredStateSeen(stateDir: string | undefined): Promise<string | undefined> {
    const recording = recordingFrontEnd();
    const daemon = await Daemon.start(config({ upnp: { enabled: false }, ...(stateDir && { stateDir }) }), {
      logger: new RecordingLogger(),
      plugins: [backendPluginFor(new RecordingBackend()), recording.plugin],
      lan: [LAN_A],
      network: new LoopbackNetwork([LAN_A]),
    });
    await daemon.stop();
    return recording.built[0]?.restoredState;
  }

  it('none without a state directory or at its first start, intact after, lost when a kept file could not be read', async () => {
    expect(await restoredStateSeen(undefined)).toBe('none');
    expect(await restoredStateSeen(dir.path)).toBe('none');
    expect(await restoredStateSeen(dir.path)).toBe('intact');
    writeFileSync(new MappingStateFile(dir.path, silentLogger).path, '{ torn by a power cut');
    expect(await restoredStateSeen(dir.path)).toBe('lost');
    expect(await restoredStateSeen(dir.path)).toBe('intact');
  });
});

describe('a LAN change and a front-end', () => {
  async function renumbered(updateLan?: { readonly inPlace: boolean }) {
    const recording = recordingFrontEnd(updateLan);
    const network = new LoopbackNetwork([LAN_A]);
    const daemon = await Daemon.start(config({ upnp: { enabled: false } }), {
      logger: new RecordingLogger(),
      plugins: [backendPluginFor(new RecordingBackend()), recording.plugin],
      lan: [LAN_A],
      network,
    });
    const before = daemon.frontEnds[0];
    try {
      network.change([LAN_B]);
      await expect.poll(() => recording.events.at(-1), { timeout: 5_000 }).toMatch(updateLan?.inPlace ? /^update/ : /^start 2/);
      // Whatever else the change does comes within this.
      await sleep(300);
      return { events: [...recording.events], lan: recording.built.map((b) => b.lan), same: daemon.frontEnds[0] === before };
    } finally {
      await daemon.stop();
    }
  }

  it('without updateLan: is stopped and built again on the new addresses', async () => {
    expect(await renumbered()).toEqual({ events: ['start 1', 'stop 1', 'start 2'], lan: [[LAN_A], [LAN_B]], same: false });
  });

  it('with updateLan: serves the new addresses in place, neither stopped nor built again', async () => {
    expect(await renumbered({ inPlace: true })).toEqual({ events: ['start 1', 'update 1 127.0.0.1/16'], lan: [[LAN_A]], same: true });
  });

  it('whose updateLan answers that it cannot: is stopped and built again', async () => {
    expect(await renumbered({ inPlace: false })).toEqual({
      events: ['start 1', 'update 1 127.0.0.1/16', 'stop 1', 'start 2'],
      lan: [[LAN_A], [LAN_B]],
      same: false,
    });
  });
});

describe('config switches', () => {
  it('NAT-PMP/PCP is on by default, after the listed plugins; natPmp: false turns it off, also when listed', () => {
    const names = (user: UserConfig, plugins: ResolvedConfig['plugins'] = []) =>
      assemblePlugins({ ...config({ backend: 'iptables', ...user }), plugins }).map((p) => p.spec.name);
    expect(names({})).toContain('nat-pmp');
    expect(names({ natPmp: false })).not.toContain('nat-pmp');
    expect(names({ natPmp: false }, [natPmp({ pcp: false })])).not.toContain('nat-pmp');
    const listed = assemblePlugins({ ...config({ backend: 'iptables' }), plugins: [natPmp({ pcp: false })] }).find((p) => p.spec.name === 'nat-pmp');
    expect(listed?.spec.options).toEqual({ pcp: false });
  });

  it('refuses a bad value of natPmp and upnp.enabled, naming the key', () => {
    const natPmpIssue = configSchema.safeParse({ natPmp: 'yes' }).error?.issues[0];
    expect(natPmpIssue?.path).toEqual(['natPmp']);
    const upnpIssue = configSchema.safeParse({ upnp: { enabled: 1 } }).error?.issues[0];
    expect(upnpIssue?.path).toEqual(['upnp', 'enabled']);
  });
});

describe('the owner nonce in the state file', () => {
  const dir = useTempDir('upnpd-nonce-');
  const mapping = {
    remoteHost: '',
    externalPort: 7000,
    protocol: 'TCP' as const,
    internalClient: '192.168.1.10',
    internalPort: 7000,
    enabled: true,
    description: 'PCP 192.168.1.10:7000',
    leaseSeconds: 3600,
    expiresAt: 0,
    createdBy: { address: '192.168.1.10', via: 'pcp' },
  };

  it('is kept with the mapping through the snapshot and the journal, and read back', async () => {
    const file = new MappingStateFile(dir.path, silentLogger);
    await file.save([{ ...mapping, ownerNonce: '00112233445566778899aabb' }], () => 60_000);
    await file.append({ mapped: [{ ...mapping, externalPort: 7001, ownerNonce: 'ffeeddccbbaa998877665544' }], unmapped: [] }, () => 60_000);
    const loaded = await file.load();
    expect(loaded.mappings.map((m) => [m.externalPort, m.ownerNonce])).toEqual([
      [7000, '00112233445566778899aabb'],
      [7001, 'ffeeddccbbaa998877665544'],
    ]);
  });

  it("is kept with a pinhole PCP opened, through the snapshot and the journal; a UPnP one's has none", async () => {
    const pinhole = {
      id: 1,
      remoteHost: '',
      remotePort: 0,
      internalClient: '2001:db8:1::10',
      internalPort: 8080,
      protocol: 'TCP' as const,
      leaseSeconds: 600,
      expiresAt: 0,
      createdBy: { address: '2001:db8:1::10', via: 'pcp' },
    };
    const file = new MappingStateFile(dir.path, silentLogger);
    await file.save([], () => 60_000, [{ ...pinhole, ownerNonce: '00112233445566778899aabb' }]);
    await file.append(
      { mapped: [], unmapped: [], pinholes: [{ ...pinhole, id: 2, internalPort: 8081, ownerNonce: 'ffeeddccbbaa998877665544' }] },
      () => 60_000,
    );
    await file.append(
      { mapped: [], unmapped: [], pinholes: [{ ...pinhole, id: 3, internalPort: 8082, createdBy: { address: pinhole.internalClient, via: 'upnp' } }] },
      () => 60_000,
    );
    const loaded = await file.load();
    expect(loaded.pinholes.map((p) => [p.id, p.ownerNonce])).toEqual([
      [1, '00112233445566778899aabb'],
      [2, 'ffeeddccbbaa998877665544'],
      [3, undefined],
    ]);
    expect(loaded.invalid).toBe(0);
  });

  it('is optional: a mapping without one (UPnP, earlier releases) loads as before; a malformed one is skipped', async () => {
    const file = new MappingStateFile(dir.path, silentLogger);
    await file.save([mapping, { ...mapping, externalPort: 7001, ownerNonce: 'not hex' }], () => 60_000);
    const loaded = await file.load();
    expect(loaded.mappings.map((m) => m.externalPort)).toEqual([7000]);
    expect(loaded.mappings[0]).not.toHaveProperty('ownerNonce');
    expect(loaded.invalid).toBe(1);
  });
});
