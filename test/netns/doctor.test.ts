import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import type { Finding } from '../../core/plugins/types.js';
import { describeNetns, type TestNamespace } from './netns.js';
import {
  createTestbed,
  installNftAdminFirewall,
  startDaemonInGateway,
  type RunningDaemon,
  type Testbed,
  PUBLIC_API,
  NFT_FORWARD_JUMP_PLUGIN,
} from './topology.js';
import { NamespaceProcess } from './namespace-process.js';

// `upnpd doctor` and the start-up warnings on a real gateway (the testbed's gateway namespace):
// each condition is reported, and no longer once fixed.

const BIN = new URL('../../bin/upnpd.js', import.meta.url).pathname;
const DOCTOR_TIMEOUT_MS = 30_000;
const WARNING_WAIT_MS = 10_000;

interface DoctorRun {
  readonly exitCode: number;
  readonly findings: Finding[];
}

async function doctor(testbed: Testbed, args: readonly string[]): Promise<DoctorRun> {
  const run = await testbed.gateway.runner().run(process.execPath, [BIN, 'doctor', '--json', ...args], { timeoutMs: DOCTOR_TIMEOUT_MS });
  let parsed: { findings: Finding[] };
  try {
    parsed = JSON.parse(run.stdout) as { findings: Finding[] };
  } catch {
    throw new Error(`upnpd doctor printed no JSON (exit ${run.exitCode}): ${run.stdout}${run.stderr}`);
  }
  return { exitCode: run.exitCode, findings: parsed.findings };
}

const severityOf = (run: DoctorRun, check: string) => run.findings.filter((f) => f.check === check).map((f) => f.severity);

async function configFile(dir: string, plugins: string): Promise<string> {
  const file = join(dir, `upnpd-${Math.random().toString(36).slice(2)}.config.mjs`);
  await writeFile(
    file,
    `import { defineConfig, nftables, iptables } from ${JSON.stringify(PUBLIC_API)};\nexport default defineConfig({ plugins: [${plugins}] });\n`,
  );
  return file;
}

async function warningsAtStart(testbed: Testbed, args: readonly string[], expected: RegExp): Promise<string> {
  let daemon: RunningDaemon | undefined;
  try {
    daemon = await startDaemonInGateway(testbed, args);
    const deadline = Date.now() + WARNING_WAIT_MS;
    while (Date.now() < deadline && !expected.test(daemon.output())) await new Promise((resolve) => setTimeout(resolve, 200));
    return daemon.output();
  } finally {
    await daemon?.stop();
  }
}

describeNetns('upnpd doctor on a gateway (iptables testbed)', ['ip', 'iptables', 'iptables-legacy', 'nft', 'sysctl'], () => {
  let testbed: Testbed;
  let scratch: string;
  const base = () => ['--lan', testbed.lanInterface, '--wan', testbed.wanInterface];

  beforeAll(async () => {
    testbed = await createTestbed();
    scratch = await mkdtemp(join(tmpdir(), 'upnpd-doctor-'));
  });
  afterAll(async () => {
    await testbed?.destroy();
    await rm(scratch, { recursive: true, force: true });
  });

  it('IP forwarding off: an error in doctor (exit 1) and a warning at start; both gone after sysctl -w net.ipv4.ip_forward=1', async () => {
    await testbed.gateway.exec('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=0']);
    try {
      const off = await doctor(testbed, [...base(), '--backend', 'iptables']);
      expect(severityOf(off, 'ip-forwarding')).toEqual(['error']);
      expect(off.exitCode).toBe(1);
      const output = await warningsAtStart(testbed, [...base(), '--backend', 'iptables'], /check ip-forwarding/);
      expect(output).toMatch(/check ip-forwarding: net.ipv4.ip_forward is 0.*Fix: sysctl -w net.ipv4.ip_forward=1/);
    } finally {
      await testbed.gateway.exec('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
    }
    const on = await doctor(testbed, [...base(), '--backend', 'iptables']);
    expect(severityOf(on, 'ip-forwarding')).toEqual(['ok']);
    expect(on.exitCode).toBe(0);
  });

  it('FORWARD policy DROP with insertForwardRules off is an error; with the default it is ok', async () => {
    const args = [...base(), '--config', await configFile(scratch, 'iptables({ insertForwardRules: false })')];
    const off = await doctor(testbed, args);
    expect(severityOf(off, 'forward-path')).toEqual(['error']);
    expect(off.findings.find((f) => f.check === 'forward-path')?.fix).toMatch(/insertForwardRules: true/);
    expect(await warningsAtStart(testbed, args, /check forward-path/)).toMatch(
      /check forward-path: the FORWARD chain has policy DROP and insertForwardRules is off/,
    );
    const on = await doctor(testbed, [...base(), '--backend', 'iptables']);
    expect(severityOf(on, 'forward-path')).toEqual(['ok']);
  });

  it('rules in iptables-legacy beside the nf_tables ones upnpd uses: a warning, gone once they are removed', async () => {
    await testbed.gateway.exec('iptables-legacy', ['-A', 'FORWARD', '-p', 'tcp', '--dport', '9', '-j', 'DROP']);
    try {
      expect(severityOf(await doctor(testbed, [...base(), '--backend', 'iptables']), 'iptables-flavours')).toEqual(['warning']);
      expect(await warningsAtStart(testbed, [...base(), '--backend', 'iptables'], /check iptables-flavours/)).toMatch(
        /check iptables-flavours: iptables-legacy has rules too/,
      );
    } finally {
      await testbed.gateway.exec('iptables-legacy', ['-F', 'FORWARD']);
    }
    expect(severityOf(await doctor(testbed, [...base(), '--backend', 'iptables']), 'iptables-flavours')).toEqual(['ok']);
  });

  it('a WAN address in carrier-grade NAT space is a warning naming the clients that refuse it', async () => {
    const run = await doctor(testbed, [...base(), '--backend', 'iptables', '--external-ip', '100.64.0.9']);
    expect(severityOf(run, 'wan-address')).toEqual(['warning']);
    expect(run.findings.find((f) => f.check === 'wan-address')?.message).toMatch(/carrier-grade NAT.*miniupnpc-based clients/);
    const args = [...base(), '--backend', 'iptables', '--external-ip', '100.64.0.9'];
    expect(await warningsAtStart(testbed, args, /check wan-address/)).toMatch(
      /check wan-address: the external address 100.64.0.9 \(externalIp\) is a carrier-grade NAT address/,
    );
  });

  it('a LAN interface without an IPv4 address: an error in doctor, a warning at start (the others are served); gone once it has one', async () => {
    await testbed.gateway.exec('ip', ['link', 'add', 'lanx0', 'type', 'veth', 'peer', 'name', 'lanx1']);
    try {
      const args = [...base(), '--lan', 'lanx0', '--backend', 'iptables'];
      expect(severityOf(await doctor(testbed, args), 'lan-address')).toEqual(['ok', 'error']);
      expect(await warningsAtStart(testbed, args, /check lan-address/)).toMatch(
        /check lan-address: LAN interface \\?"lanx0\\?" does not exist, is down or has no IPv4 address/,
      );
      await testbed.gateway.exec('ip', ['addr', 'add', '10.99.0.1/24', 'dev', 'lanx0']);
      for (const end of ['lanx0', 'lanx1']) await testbed.gateway.exec('ip', ['link', 'set', end, 'up']);
      expect(severityOf(await doctor(testbed, args), 'lan-address')).toEqual(['ok', 'ok']);
    } finally {
      await testbed.gateway.exec('ip', ['link', 'del', 'lanx0']);
    }
  });

  it('the HTTP port already taken on the LAN address is an error; free, it is ok', async () => {
    const holder = NamespaceProcess.start(
      testbed.gateway,
      [process.execPath, '-e', `require('net').createServer().listen(5555, '${testbed.addresses.gatewayLan}', () => console.log('listening'))`],
      {},
    );
    try {
      await holder.waitFor(/listening/, 10_000);
      expect(severityOf(await doctor(testbed, [...base(), '--backend', 'iptables', '--http-port', '5555']), 'http-port')).toEqual(['error']);
      // The daemon cannot start on a taken port; it says why before it gives up.
      const start = NamespaceProcess.start(testbed.gateway, [process.execPath, BIN, ...base(), '--backend', 'iptables', '--http-port', '5555'], {});
      expect(await start.exited()).not.toBe(0);
      expect(start.output()).toMatch(/check http-port: TCP port 5555 is already taken on 192.168.77.1/);
    } finally {
      await holder.kill();
    }
    expect(severityOf(await doctor(testbed, [...base(), '--backend', 'iptables', '--http-port', '5555']), 'http-port')).toEqual(['ok']);
  });

  it('another IGD answering on the LAN is a warning naming it; once it stops, ok', async () => {
    const responder = await startFakeIgd(testbed.lan);
    try {
      const run = await doctor(testbed, [...base(), '--backend', 'iptables']);
      expect(severityOf(run, 'other-igd')).toEqual(['warning']);
      expect(run.findings.find((f) => f.check === 'other-igd')?.message).toContain(`${testbed.addresses.lanClient} (FakeOS/1 UPnP/1.1 fake-igd/1`);
      expect(await warningsAtStart(testbed, [...base(), '--backend', 'iptables'], /check other-igd/)).toMatch(
        /check other-igd: another Internet Gateway Device answers on the LAN: 192.168.77.10/,
      );
    } finally {
      await responder.kill();
    }
    expect(severityOf(await doctor(testbed, [...base(), '--backend', 'iptables']), 'other-igd')).toEqual(['ok']);
  });
});

describeNetns('upnpd doctor on a gateway whose nftables forward chain drops', ['ip', 'nft', 'sysctl'], () => {
  let testbed: Testbed;
  let scratch: string;
  let daemon: RunningDaemon | undefined;
  const base = () => ['--lan', testbed.lanInterface, '--wan', testbed.wanInterface];

  beforeAll(async () => {
    testbed = await createTestbed({ forwardPolicy: 'ACCEPT' });
    await installNftAdminFirewall(testbed);
    scratch = await mkdtemp(join(tmpdir(), 'upnpd-doctor-'));
  });
  afterEach(async () => {
    await daemon?.stop();
    daemon = undefined;
  });
  afterAll(async () => {
    await testbed?.destroy();
    await rm(scratch, { recursive: true, force: true });
  });

  it('without forwardJump: an error naming the chain and the exact forwardJump, and a warning at start', async () => {
    const run = await doctor(testbed, [...base(), '--backend', 'nftables']);
    const finding = run.findings.find((f) => f.check === 'forward-path');
    expect(finding?.severity).toBe('error');
    expect(finding?.message).toMatch(/chain forward of table inet filter has policy drop and upnpd does not jump from it/);
    expect(finding?.fix).toBe(`nftables({ forwardJump: { family: 'inet', table: 'filter', chain: 'forward' } }) in the plugins of upnpd.config.js`);
    expect(run.exitCode).toBe(1);
    expect(await warningsAtStart(testbed, [...base(), '--backend', 'nftables'], /check forward-path/)).toMatch(
      /check forward-path: chain forward of table inet filter/,
    );
  });

  it('IPv6 forwarding off where pinholes are opened (forwardJump into inet): an error, ok after sysctl -w net.ipv6.conf.all.forwarding=1', async () => {
    const args = [...base(), '--config', await configFile(scratch, NFT_FORWARD_JUMP_PLUGIN)];
    await testbed.gateway.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.all.forwarding=0']);
    const off = await doctor(testbed, args);
    expect(severityOf(off, 'ipv6-forwarding')).toEqual(['error']);
    expect(off.findings.find((f) => f.check === 'ipv6-forwarding')?.fix).toMatch(/sysctl -w net.ipv6.conf.all.forwarding=1/);
    await testbed.gateway.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.all.forwarding=1']);
    expect(severityOf(await doctor(testbed, args), 'ipv6-forwarding')).toEqual(['ok']);
    // Without pinholes (no forwardJump) it is not checked.
    expect(severityOf(await doctor(testbed, [...base(), '--backend', 'nftables']), 'ipv6-forwarding')).toEqual([]);
  });

  it('with the forwardJump it names: ok, before the start and while the daemon runs', async () => {
    const config = await configFile(scratch, NFT_FORWARD_JUMP_PLUGIN);
    expect(severityOf(await doctor(testbed, [...base(), '--config', config]), 'forward-path')).toEqual(['ok']);
    daemon = await startDaemonInGateway(testbed, [...base(), '--config', config]);
    expect(severityOf(await doctor(testbed, [...base(), '--config', config, '--http-port', '0']), 'forward-path')).toEqual(['ok']);
    expect(daemon.output()).not.toMatch(/check forward-path/);
  });
});

/** A minimal IGD's SSDP side in a LAN namespace: answers every M-SEARCH for an IGD with its own USN. */
function startFakeIgd(lan: TestNamespace): Promise<NamespaceProcess> {
  const script = `
    const s = require('dgram').createSocket({ type: 'udp4', reuseAddr: true });
    s.on('message', (m, r) => {
      if (!/^M-SEARCH/.test(m.toString())) return;
      const reply = 'HTTP/1.1 200 OK\\r\\nCACHE-CONTROL: max-age=1800\\r\\nEXT:\\r\\nLOCATION: http://' + r.address.replace(/\\.\\d+$/, '.10') + ':5000/rootDesc.xml\\r\\n' +
        'SERVER: FakeOS/1 UPnP/1.1 fake-igd/1\\r\\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\\r\\n' +
        'USN: uuid:00000000-0000-0000-0000-00000000beef::urn:schemas-upnp-org:device:InternetGatewayDevice:1\\r\\n\\r\\n';
      s.send(reply, r.port, r.address);
    });
    s.bind(1900, () => { s.addMembership('239.255.255.250'); console.log('answering'); });
    setTimeout(() => process.exit(0), 60000);
  `;
  const process_ = NamespaceProcess.start(lan, [process.execPath, '-e', script], {});
  return process_.waitFor(/answering/, 10_000).then(() => process_);
}
