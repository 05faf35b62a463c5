import 'reflect-metadata';
import { describe, expect, it } from 'vitest';
import { parseCommandLine } from '../../app/command-line.js';
import { startDaemon } from '../../app/compose.js';
import { lanIpv6Addresses } from '../../core/daemon.js';
import { configSchema, type ResolvedConfig, type UserConfig } from '../../core/config/schema.js';
import { createRootLogger } from '../../core/logging.js';
import type { Ipv6InterfaceAddress, Ipv6Lan } from '../../core/net/ipv6.js';
import type { InterfaceAddress, NetworkInfo } from '../../core/net/network-info.js';
import { defineBackend } from '../../core/plugins/define.js';
import { RecordingBackend, RecordingLogger } from '../support/fakes.js';
import { LoopbackNetwork } from '../support/loopback-network.js';
import { describeRequiring } from '../support/requirements.js';

const LOOPBACK: InterfaceAddress = { interface: 'lo', address: '127.0.0.1', prefixLength: 8 };
const LOOPBACK_IPV6: Ipv6InterfaceAddress = { interface: 'lo', address: '::1', prefixLength: 128, scopeId: 1, linkLocal: false };

function configWith(user: UserConfig): ResolvedConfig {
  const memory = defineBackend({ name: 'memory', create: () => new RecordingBackend() });
  return { ...configSchema.parse({ lan: ['lo'], externalIp: '203.0.113.1', ...user }), source: 'test', lanFromCommandLine: true, plugins: [memory()] };
}

describe('the ipv6 switch', () => {
  it('is on by default, off with --no-ipv6, and must be a boolean', () => {
    expect(configSchema.parse({}).ipv6).toBe(true);
    expect(parseCommandLine(['--no-ipv6']).load.overrides).toMatchObject({ ipv6: false });
    expect(parseCommandLine([]).load.overrides?.ipv6).toBeUndefined();
    const invalid = configSchema.safeParse({ ipv6: 'no' });
    expect(invalid.success).toBe(false);
    expect(invalid.error?.issues[0]?.path).toEqual(['ipv6']);
  });
});

describe('which LAN IPv6 addresses the daemon serves', () => {
  const network = new LoopbackNetwork([LOOPBACK], [LOOPBACK_IPV6]);
  it('those of the LAN interfaces; none with ipv6: false', () => {
    expect(lanIpv6Addresses(configWith({}), network)).toEqual([LOOPBACK_IPV6]);
    expect(lanIpv6Addresses(configWith({ ipv6: false }), network)).toEqual([]);
  });

  it('in dry-run without --lan, ::1 at most', () => {
    const dryRun = { ...configWith({ dryRun: true }), lanFromCommandLine: false };
    network.ipv6 = [LOOPBACK_IPV6, { ...LOOPBACK_IPV6, address: '2001:db8::1' }];
    expect(lanIpv6Addresses(dryRun, network)).toEqual([LOOPBACK_IPV6]);
    network.ipv6 = [LOOPBACK_IPV6];
  });

  it('none when the NetworkInfo knows no IPv6 (an IPv4-only host)', () => {
    const ipv4Only: NetworkInfo = { ipv4Addresses: () => [LOOPBACK], counters: () => Promise.resolve(null), link: () => Promise.resolve(null) };
    expect(lanIpv6Addresses(configWith({}), ipv4Only)).toEqual([]);
  });
});

const hasLoopbackIpv6 = (async () => {
  const { readIpv6Addresses } = await import('../../core/net/ipv6.js');
  return readIpv6Addresses('lo').some((a) => a.address === '::1') ? undefined : 'no ::1 on this host (IPv6 off)';
})();

describeRequiring('the running daemon and its LAN IPv6 side', hasLoopbackIpv6, () => {
  it('serves ::1 besides 127.0.0.1, and tells listeners when the LAN IPv6 addresses change, once they are served', async () => {
    const network = new LoopbackNetwork([LOOPBACK], [LOOPBACK_IPV6]);
    const { output } = createRootLogger({ level: 'silent' });
    const daemon = await startDaemon(configWith({}), { logger: new RecordingLogger(), logOutput: output, network });
    try {
      expect(daemon.frontEnds[0]!.describe!()).toEqual([
        expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+\//),
        expect.stringMatching(/^http:\/\/\[::1\]:\d+\//),
      ]);
      expect(daemon.lanIpv6.prefixes).toEqual([{ interface: 'lo', prefix: '::1', prefixLength: 128 }]);
      expect(daemon.lanIpv6.interfaceOf('::1')).toBe('lo');

      const changes: Array<{ current: Ipv6Lan; previous: Ipv6Lan }> = [];
      const stop = daemon.onLanIpv6Change((current, previous) => changes.push({ current, previous }));
      network.change([LOOPBACK], [{ ...LOOPBACK_IPV6, prefixLength: 127 }]);
      await expect.poll(() => changes.length, { timeout: 5_000 }).toBe(1);
      expect(changes[0]!.previous.prefixes).toEqual([{ interface: 'lo', prefix: '::1', prefixLength: 128 }]);
      expect(changes[0]!.current.prefixes).toEqual([{ interface: 'lo', prefix: '::', prefixLength: 127 }]);
      expect(daemon.lanIpv6).toBe(changes[0]!.current);
      expect(daemon.lanIpv6.interfaceOf('::')).toBe('lo');

      // An address event that changes nothing (a lifetime refresh) tells nobody; after stop(), nothing either.
      network.change([LOOPBACK], [{ ...LOOPBACK_IPV6, prefixLength: 127 }]);
      stop();
      network.change([LOOPBACK], [LOOPBACK_IPV6]);
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      expect(changes).toHaveLength(1);
    } finally {
      await daemon.stop();
    }
  });

  it('serves no IPv6 with ipv6: false', async () => {
    const { output } = createRootLogger({ level: 'silent' });
    const daemon = await startDaemon(configWith({ ipv6: false }), {
      logger: new RecordingLogger(),
      logOutput: output,
      network: new LoopbackNetwork([LOOPBACK], [LOOPBACK_IPV6]),
    });
    try {
      expect(daemon.frontEnds[0]!.describe!()).toEqual([expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+\//)]);
      expect(daemon.lanIpv6.addresses).toEqual([]);
    } finally {
      await daemon.stop();
    }
  });
});
