import 'reflect-metadata';
import { describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { doctor, doctorFindings } from '../../app/doctor.js';
import { startDaemon } from '../../app/compose.js';
import { hostFindings, type HostReaders } from '../../app/checks/index.js';
import {
  ipForwardingFinding,
  ipv6ForwardingFinding,
  nonPublicKind,
  otherIgdFinding,
  parseProcNet,
  portFindings,
  wanAddressFinding,
  type BoundPort,
  type IgdAnswer,
} from '../../app/checks/host.js';
import { configSchema, type ResolvedConfig } from '../../core/config/schema.js';
import { createRootLogger } from '../../core/logging.js';
import type { InterfaceAddress, NetworkInfo } from '../../core/net/network-info.js';
import { defineBackend, definePlugin } from '../../core/plugins/define.js';
import type { Finding } from '../../core/plugins/types.js';
import { udnsForLan } from '../../core/upnp/index.js';
import { forwardPathFindings } from '../../plugins/nftables/diagnose.js';
import { forwardPolicyFinding, mixedFlavourFinding } from '../../plugins/iptables/diagnose.js';
import { RecordingBackend, RecordingLogger } from '../support/fakes.js';

const LAN: InterfaceAddress = { interface: 'br-lan', address: '192.168.1.1', prefixLength: 24 };

function network(addresses: Record<string, InterfaceAddress[]>): NetworkInfo {
  return { ipv4Addresses: (iface) => addresses[iface] ?? [], counters: () => Promise.resolve(null), link: () => Promise.resolve(null) };
}

function readers(overrides: Partial<HostReaders> = {}): HostReaders {
  return {
    ipForward: () => Promise.resolve('1\n'),
    ipv6Forward: () => Promise.resolve('1\n'),
    boundPorts: () => Promise.resolve([]),
    probeIgds: () => Promise.resolve([]),
    ...overrides,
  };
}

function config(overrides: Record<string, unknown> = {}, plugins: ResolvedConfig['plugins'] = []): ResolvedConfig {
  return { ...configSchema.parse({ lan: ['br-lan'], wan: 'wan0', ...overrides }), source: 'test', lanFromCommandLine: true, plugins };
}

const bySeverity = (findings: readonly Finding[], check: string) => findings.filter((f) => f.check === check).map((f) => f.severity);

describe('IP forwarding', () => {
  it('is an error when net.ipv4.ip_forward is 0, with the sysctl that fixes it, and ok when 1', () => {
    expect(ipForwardingFinding('0\n')).toMatchObject({ severity: 'error', fix: expect.stringContaining('sysctl -w net.ipv4.ip_forward=1') as unknown });
    expect(ipForwardingFinding('1\n').severity).toBe('ok');
    expect(ipForwardingFinding(undefined).severity).toBe('warning');
  });
});

describe('IPv6 forwarding', () => {
  it('is an error when net.ipv6.conf.all.forwarding is 0, with the fix, and ok when 1', () => {
    expect(ipv6ForwardingFinding('0\n')).toMatchObject({
      severity: 'error',
      fix: expect.stringContaining('sysctl -w net.ipv6.conf.all.forwarding=1') as unknown,
    });
    expect(ipv6ForwardingFinding('1\n').severity).toBe('ok');
    expect(ipv6ForwardingFinding(undefined).severity).toBe('warning');
  });

  it('is checked only where pinholes are opened: a backend with pinholes and ipv6 on', async () => {
    const lan = network({ 'br-lan': [LAN], wan0: [{ interface: 'wan0', address: '198.51.100.7', prefixLength: 24 }] });
    const off = readers({ ipv6Forward: () => Promise.resolve('0\n') });
    const checks = async (backend: RecordingBackend, overrides: Record<string, unknown> = {}) =>
      bySeverity(await hostFindings(config(overrides), lan, off, backend), 'ipv6-forwarding');
    expect(await checks(new RecordingBackend({ pinholes: true }))).toEqual(['error']);
    expect(await checks(new RecordingBackend({ pinholes: true }), { ipv6: false })).toEqual([]);
    expect(await checks(new RecordingBackend({ pinholes: false }))).toEqual([]);
  });
});

describe('the WAN address', () => {
  it.each([
    ['10.1.2.3', 'private'],
    ['172.20.0.1', 'private'],
    ['192.168.0.2', 'private'],
    ['100.64.0.1', 'carrier-grade NAT'],
    ['100.127.255.254', 'carrier-grade NAT'],
    ['169.254.1.1', 'link-local'],
    ['203.0.113.1', 'TEST-NET-3'],
  ])('%s is %s: a warning naming the clients that refuse it', (address, kind) => {
    expect(nonPublicKind(address)).toContain(kind);
    const finding = wanAddressFinding(address, 'the address of wan0', false);
    expect(finding.severity).toBe('warning');
    expect(finding.message).toMatch(/miniupnpc-based clients.*libp2p/);
  });

  it('a public address is ok; a missing one is a warning saying mapping actions answer 501', () => {
    expect(nonPublicKind('100.128.0.1')).toBeUndefined();
    expect(wanAddressFinding('100.128.0.1', 'externalIp', false).severity).toBe('ok');
    expect(wanAddressFinding(undefined, 'the address of wan0', false)).toMatchObject({
      severity: 'warning',
      message: expect.stringContaining('501') as unknown,
    });
  });
});

describe('ports', () => {
  const table = [
    '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
    '   0: 0101A8C0:1388 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0',
    '   1: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0',
    '   2: 0101A8C0:1F90 0201A8C0:C350 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 100 0 0 10 0',
  ].join('\n');

  it('reads the listening TCP sockets of /proc/net/tcp (not the connected ones)', () => {
    expect(parseProcNet('tcp', table)).toEqual([
      { protocol: 'tcp', address: '192.168.1.1', port: 5000 },
      { protocol: 'tcp', address: '127.0.0.1', port: 22 },
    ]);
  });

  it('the HTTP port taken on a LAN address is an error; SSDP taken is a warning; free ports are ok', () => {
    const bound: BoundPort[] = [
      { protocol: 'tcp', address: '192.168.1.1', port: 5000 },
      { protocol: 'udp', address: '0.0.0.0', port: 1900 },
    ];
    expect(portFindings(bound, [LAN], 5000).map((f) => [f.check, f.severity])).toEqual([
      ['http-port', 'error'],
      ['ssdp-port', 'warning'],
    ]);
    expect(portFindings([], [LAN], 5000).map((f) => f.severity)).toEqual(['ok', 'ok']);
    // Any free port (0) cannot be taken.
    expect(portFindings(bound, [LAN], 0).map((f) => f.check)).toEqual(['ssdp-port']);
  });
});

describe('another IGD on the LAN', () => {
  const own = udnsForLan([LAN]);
  const answer = (usn: string, from = '192.168.1.1'): IgdAnswer => ({
    from,
    usn,
    server: 'Linux UPnP/1.1 MiniUPnPd/2.3.1',
    location: `http://${from}:5000/rootDesc.xml`,
  });

  it("ignores upnpd's own answers and warns about any other, naming who answered", () => {
    expect(otherIgdFinding([answer(`${own.gateway}::urn:schemas-upnp-org:device:InternetGatewayDevice:1`)], [own.gateway]).severity).toBe('ok');
    const other = otherIgdFinding([answer('uuid:aaaa::urn:schemas-upnp-org:device:InternetGatewayDevice:1', '192.168.1.7')], [own.gateway]);
    expect(other.severity).toBe('warning');
    expect(other.message).toContain('192.168.1.7 (Linux UPnP/1.1 MiniUPnPd/2.3.1');
  });
});

describe('the nftables forward path', () => {
  const ruleset = (policy: string, rules: object[] = []) =>
    JSON.stringify({
      nftables: [
        { table: { family: 'inet', name: 'filter' } },
        { chain: { family: 'inet', table: 'filter', name: 'forward', type: 'filter', hook: 'forward', prio: 0, policy } },
        ...rules.map((expr) => ({ rule: { family: 'inet', table: 'filter', chain: 'forward', expr } })),
      ],
    });
  const options = { table: 'upnpd', forwardJump: undefined };

  it('a forward chain with policy drop that upnpd does not jump from is an error, with the forwardJump to add', () => {
    const [finding] = forwardPathFindings(ruleset('drop'), options);
    expect(finding).toMatchObject({ check: 'forward-path', severity: 'error' });
    expect(finding?.fix).toBe("nftables({ forwardJump: { family: 'inet', table: 'filter', chain: 'forward' } }) in the plugins of upnpd.config.js");
  });

  it('so is one that ends in a drop rule; one that accepts is ok', () => {
    expect(forwardPathFindings(ruleset('accept', [[{ drop: null }]]), options)[0]?.severity).toBe('error');
    expect(forwardPathFindings(ruleset('accept'), options)[0]?.severity).toBe('ok');
  });

  it('is ok when it jumps to upnpd, or when forwardJump names it (the jump is added at start)', () => {
    expect(forwardPathFindings(ruleset('drop', [[{ jump: { target: 'upnpd-forward' } }]]), options)[0]?.severity).toBe('ok');
    const named = { table: 'upnpd', forwardJump: { family: 'inet' as const, table: 'filter', chain: 'forward' } };
    expect(forwardPathFindings(ruleset('drop'), named)[0]?.severity).toBe('ok');
  });
});

describe('the iptables forward path', () => {
  it('FORWARD with policy DROP and insertForwardRules off is an error; on, it is ok', () => {
    expect(forwardPolicyFinding('-P FORWARD DROP\n', { insertForwardRules: false }).severity).toBe('error');
    expect(forwardPolicyFinding('-P FORWARD DROP\n', { insertForwardRules: true }).severity).toBe('ok');
    expect(forwardPolicyFinding('-P FORWARD ACCEPT\n', { insertForwardRules: false }).severity).toBe('ok');
  });

  it('rules in the other iptables flavour are a warning (an ACCEPT in one cannot override a DROP in the other)', () => {
    const legacy = '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n';
    expect(mixedFlavourFinding('iptables', 'iptables-legacy', legacy, 'upnpd').severity).toBe('warning');
    const empty = '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n';
    expect(mixedFlavourFinding('iptables', 'iptables-legacy', empty, 'upnpd').severity).toBe('ok');
    expect(mixedFlavourFinding('iptables', 'iptables-legacy', undefined, 'upnpd').severity).toBe('ok');
  });
});

describe('upnpd doctor', () => {
  const memory = defineBackend({ name: 'memory', create: () => new RecordingBackend() });
  const env = (ipForward: string, lanAddresses: InterfaceAddress[] = [LAN]) => ({
    network: network({ 'br-lan': lanAddresses, wan0: [{ interface: 'wan0', address: '100.64.0.9', prefixLength: 10 }] }),
    readers: readers({ ipForward: () => Promise.resolve(ipForward) }),
  });

  it('lists every check; IP forwarding off is an error, a CGNAT WAN address a warning', async () => {
    const findings = await doctorFindings(config({}, [memory()]), env('0\n'));
    expect(findings.map((f) => f.check)).toEqual([
      'config',
      'firewall',
      'ssdp-port',
      'ip-forwarding',
      'ipv6-forwarding',
      'wan-address',
      'lan-address',
      'other-igd',
    ]);
    expect(bySeverity(findings, 'ip-forwarding')).toEqual(['error']);
    expect(bySeverity(findings, 'wan-address')).toEqual(['warning']);
    expect(
      bySeverity(
        (await doctorFindings(config({}, [memory()]), env('1\n'))).filter((f) => f.severity === 'error'),
        'ip-forwarding',
      ),
    ).toEqual([]);
  });

  it('builds the plugins as the daemon does: one whose create throws makes the config an error, naming its entry', async () => {
    const broken = definePlugin({
      name: 'broken',
      create: () => {
        throw new Error('no token');
      },
    });
    const findings = await doctorFindings(config({}, [memory(), broken()]), env('1\n'));
    expect(findings[0]).toMatchObject({ check: 'config', severity: 'error', message: 'test: plugins[1] (broken): could not be created: no token' });
    expect(bySeverity(findings, 'firewall')).toEqual(['ok']);
  });

  it('a LAN interface without an address is an error there', async () => {
    const findings = await doctorFindings(config({ lan: ['br-lan', 'dummy0'] }, [memory()]), env('1\n'));
    const lan = findings.filter((f) => f.check === 'lan-address');
    expect(lan.map((f) => f.severity)).toEqual(['ok', 'error']);
    expect(lan[0]?.message).toBe('LAN interface br-lan has 192.168.1.1/24');
    expect(lan[1]?.message).toMatch(/^LAN interface "dummy0" does not exist, is down or has no IPv4 address/);
    expect(lan[1]?.fix).toMatch(/ip addr add ADDR\/PREFIX dev dummy0/);
  });

  it('prints a checklist, or JSON with --json, and exits 1 when a check is an error, 0 otherwise', async () => {
    let text = '';
    const out = new Writable({
      write(chunk: Buffer, _encoding, done) {
        text += chunk.toString();
        done();
      },
    });
    expect(await doctor(['--dry-run'], out)).toBe(0);
    expect(text).toMatch(/^ok {6}config: configuration valid/m);
    expect(text).toMatch(/0 error\(s\)/);
    text = '';
    expect(await doctor(['--json', '--backend', 'nope', '--dry-run'], out)).toBe(1);
    const parsed = JSON.parse(text) as { ok: boolean; findings: Finding[] };
    expect(parsed.ok).toBe(false);
    expect(parsed.findings.find((f) => f.check === 'firewall')?.message).toMatch(/unknown firewall backend "nope"/);
  });
});

describe('start-up checks', () => {
  it('log one warning per problem with its fix, and the daemon starts all the same', async () => {
    const logger = new RecordingLogger();
    const { output } = createRootLogger({ level: 'silent' });
    const lo: InterfaceAddress = { interface: 'lo', address: '127.0.0.1', prefixLength: 8 };
    const daemon = await startDaemon(
      {
        ...configSchema.parse({ lan: ['lo'], externalIp: '100.64.0.9', logLevel: 'silent' }),
        source: 'test',
        lanFromCommandLine: true,
        plugins: [defineBackend({ name: 'memory', create: () => new RecordingBackend() })()],
      },
      { logger, logOutput: output, network: network({ lo: [lo] }), hostReaders: readers({ ipForward: () => Promise.resolve('0\n') }) },
    );
    try {
      const warnings = logger.lines.filter((l) => l.level === 'warn').map((l) => l.message);
      expect(warnings).toContainEqual(expect.stringMatching(/^check ip-forwarding: net.ipv4.ip_forward is 0.*Fix: sysctl -w net.ipv4.ip_forward=1/));
      expect(warnings).toContainEqual(expect.stringMatching(/^check wan-address: the external address 100.64.0.9 .* carrier-grade NAT/));
    } finally {
      await daemon.stop();
    }
  });
});
