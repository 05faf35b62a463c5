import 'reflect-metadata';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { check } from '../../app/check.js';
import { migrate, migrateText } from '../../app/migrate.js';
import type { NetworkInfo } from '../../core/net/network-info.js';

const scratch = mkdtempSync(join(tmpdir(), 'upnpd-migrate-'));
const PUBLIC_API = new URL('../../core/index.ts', import.meta.url).href;

/** linux-igd's /etc/upnpd.conf, with every key the seed article and the linux-igd sources name. */
const LINUX_IGD_CONF = `# linux-igd configuration
iptables_location = "/sbin/iptables"
debug_mode = 2
insert_forward_rules = yes
forward_rules_append = no
forward_chain_name = FORWARD
prerouting_chain_name = my-prerouting
upstream_bitrate = 512000
downstream_bitrate = 1024000
duration = 86400
description_document_name = gatedesc.xml
xml_document_path = /etc/linuxigd
listenport = 49000
`;

/** A miniupnpd.conf as OpenWrt or Debian ship it, with permission rules. */
const MINIUPNPD_CONF = `ext_ifname=eth0
listening_ip=br-lan
http_port=5000
enable_natpmp=yes
enable_upnp=yes
secure_mode=yes
min_lifetime=120
max_lifetime=86400
friendly_name=Home gateway
uuid=fc4ec57e-b051-11db-88f8-0060085db3f6
allow 1024-65535 192.168.1.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
`;

const NO_INTERFACES: NetworkInfo = { ipv4Addresses: () => [], counters: () => Promise.resolve(null), link: () => Promise.resolve(null) };

function sink(): { stream: Writable; text: () => string } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString();
      done();
    },
  });
  return { stream, text: () => text };
}

/** Writes the migrated module where `upnpd check` can load it (importing upnpd's sources), and checks it. */
async function checks(module: string, flags: string[] = []): Promise<{ code: number; err: string }> {
  const file = join(scratch, `m${Math.random().toString(36).slice(2)}.config.mjs`);
  writeFileSync(file, module.replace("from 'upnpd'", `from ${JSON.stringify(PUBLIC_API)}`));
  const out = sink();
  const err = sink();
  const code = await check(['--config', file, ...flags], out.stream, err.stream, NO_INTERFACES);
  return { code, err: err.text() };
}

describe('upnpd migrate', () => {
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it("turns linux-igd's upnpd.conf into iptables() with the old chain settings explained, and comments what has no equivalent", async () => {
    const { format, module } = migrateText(LINUX_IGD_CONF, '/etc/upnpd.conf');
    expect(format).toBe('linux-igd');
    expect(module).toContain("import { defineConfig, iptables } from 'upnpd';");
    expect(module).toContain('iptables({ insertForwardRules: true }),');
    expect(module).toContain('lease: { defaultSeconds: 86400, allowPermanent: false },');
    expect(module).toContain('logLevel: "debug",');
    expect(module).toContain('httpPort: 49000,');
    expect(module).toContain('jumped to once from FORWARD; it never flushes a chain it does not own');
    expect(module).toContain('your chain my-prerouting is left alone');
    for (const key of [
      'iptables_location',
      'forward_rules_append',
      'upstream_bitrate',
      'downstream_bitrate',
      'description_document_name',
      'xml_document_path',
    ]) {
      expect(module).toMatch(new RegExp(`^// - ${key} = `, 'm'));
    }
    // linux-igd took its interfaces on the command line (the note says so): so does the daemon, and check as it.
    expect(await checks(module, ['--lan', 'br-lan', '--wan', 'eth0'])).toEqual({ code: 0, err: expect.not.stringContaining('error') as unknown });
    expect(await checks(module)).toMatchObject({ code: 2, err: expect.stringContaining('lan: no LAN interface given') as unknown });
  });

  it('turns a miniupnpd.conf into interfaces, port, secure mode, leases and its allow/deny lines verbatim', async () => {
    const { format, module } = migrateText(MINIUPNPD_CONF, '/etc/miniupnpd/miniupnpd.conf');
    expect(format).toBe('miniupnpd');
    expect(module).toContain('lan: ["br-lan"],');
    expect(module).toContain('wan: "eth0",');
    expect(module).toContain('httpPort: 5000,');
    expect(module).toContain('secureMode: true,');
    expect(module).toContain('lease: { maxSeconds: 86400 },');
    expect(module).toContain('upnp: { enabled: true, friendlyName: "Home gateway" },');
    expect(module).toContain('natPmp: true,');
    expect(module).toContain(`permissions({ rules: ["allow 1024-65535 192.168.1.0/24 1024-65535","deny 0-65535 0.0.0.0/0 0-65535"], defaultAction: 'deny' }),`);
    expect(module).not.toMatch(/enable_(natpmp|upnp) = yes: no equivalent/);
    const result = await checks(module);
    expect(result.code).toBe(0);
    // The interfaces are those of the gateway, not of this machine: warnings only.
    expect(result.err).toContain('warning: interface "br-lan" does not exist on this machine');
  });

  it('keeps NAT-PMP/PCP or UPnP off where the miniupnpd.conf turned them off (as NixOS writes it), in one upnp object', async () => {
    const conf = 'ext_ifname=eth0\nenable_natpmp=no\nenable_upnp=no\nfriendly_name=Box\nlistening_ip=br-lan\n';
    const { module } = migrateText(conf, 'miniupnpd.conf');
    expect(module).toContain('natPmp: false,');
    expect(module).toContain('upnp: { enabled: false, friendlyName: "Box" },');
    expect(module.match(/^\s*upnp:/gm)).toHaveLength(1);
    expect(module).not.toContain('no equivalent');
    expect((await checks(module)).code).toBe(0);
    const { module: older } = migrateText('ext_ifname=eth0\nenable_pcp_pmp=no\n', 'miniupnpd.conf');
    expect(older).toContain('natPmp: false,');
  });

  it("reads miniupnpd's older name of the HTTP port, port=, as http_port= (miniupnpd's options.c takes both)", () => {
    const { module } = migrateText('ext_ifname=eth0\nlistening_ip=br-lan\nport=5555\n', 'miniupnpd.conf');
    expect(module).toContain('httpPort: 5555,');
    expect(module).not.toContain('port = 5555');
  });

  it('prints to stdout and exits 0; a missing file exits 2 naming it', async () => {
    const file = join(scratch, 'upnpd.conf');
    writeFileSync(file, LINUX_IGD_CONF);
    const out = sink();
    expect(await migrate([file], out.stream, sink().stream)).toBe(0);
    expect(out.text()).toMatch(/^\/\/ Migrated by `upnpd migrate` from .*upnpd\.conf \(linux-igd\)/);
    const err = sink();
    expect(await migrate([join(scratch, 'nope.conf')], sink().stream, err.stream)).toBe(2);
    expect(err.text()).toMatch(/nope\.conf: ENOENT/);
  });
});
