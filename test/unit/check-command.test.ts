import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { check } from '../../app/check.js';
import type { NetworkInfo } from '../../core/net/network-info.js';
import { describeRequiring, missingPrograms } from '../support/requirements.js';

const scratch = mkdtempSync(join(tmpdir(), 'upnpd-check-'));
const PUBLIC_API = new URL('../../core/index.ts', import.meta.url).href;

function sink(): { stream: Writable; text: () => string } {
  let text = '';
  return {
    stream: new Writable({
      write(chunk: Buffer, _encoding, done) {
        text += chunk.toString();
        done();
      },
    }),
    text: () => text,
  };
}

/** A machine with only br-lan (so a file written for it names interfaces this one lacks). */
const NETWORK: NetworkInfo = {
  ipv4Addresses: (iface) => (iface === 'br-lan' ? [{ interface: 'br-lan', address: '192.168.1.1', prefixLength: 24 }] : []),
  counters: () => Promise.resolve(null),
  link: () => Promise.resolve(null),
};

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = sink();
  const err = sink();
  const code = await check(args, out.stream, err.stream, NETWORK);
  return { code, out: out.text(), err: err.text() };
}

function configFile(body: string): string {
  const file = join(scratch, `c${Math.random().toString(36).slice(2)}.config.mjs`);
  writeFileSync(file, body);
  return file;
}

describe('upnpd check', () => {
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it('exits 0 for a valid file and names the plugins it would run', async () => {
    const file = configFile(
      `import { defineConfig, nftables } from ${JSON.stringify(PUBLIC_API)};\nexport default defineConfig({ lan: ['br-lan'], wan: 'eth0', plugins: [nftables({ table: 'gw' })] });\n`,
    );
    const r = await run(['--config', file]);
    expect(r.code).toBe(0);
    expect(r.out).toBe(`${file}: valid (plugins: description, lan-target, reserved-ports, remote-host, quota, secure-mode, nftables, logging, nat-pmp)\n`);
  });

  it('runs lan-target without secure mode too: secureMode false lets a client map for other LAN hosts, never for hosts outside the LAN', async () => {
    const file = configFile(`export default { lan: ['br-lan'], wan: 'eth0', backend: 'nftables', secureMode: false };\n`);
    const r = await run(['--config', file]);
    expect(r.out).toBe(`${file}: valid (plugins: description, lan-target, reserved-ports, remote-host, quota, nftables, logging, nat-pmp)\n`);
  });

  it('names interfaces this machine lacks as a warning, not an error', async () => {
    const file = configFile(`export default { lan: ['br-lan', 'lan9'], wan: 'ppp0', backend: 'iptables' };\n`);
    const r = await run(['--config', file]);
    expect(r.code).toBe(0);
    expect(r.err).toContain('warning: interface "lan9" does not exist on this machine');
    expect(r.err).toContain('warning: interface "ppp0" does not exist on this machine');
  });

  it("exits 2 with the daemon's message naming the file and key for a bad value, a bad plugin option and an unknown backend", async () => {
    const badValue = configFile(`export default { lease: { maxSeconds: 9999999 } };\n`);
    expect(await run(['--config', badValue])).toMatchObject({ code: 2, err: expect.stringContaining(`${badValue}: lease.maxSeconds: Too big`) as unknown });
    const badOption = configFile(`import { nftables } from ${JSON.stringify(PUBLIC_API)};\nexport default { plugins: [nftables({ tabel: 'x' })] };\n`);
    expect(await run(['--config', badOption])).toMatchObject({
      code: 2,
      err: expect.stringContaining(`${badOption}: plugins[0] (nftables).tabel: unknown key`) as unknown,
    });
    const unknownBackend = configFile(`export default { lan: ['br-lan'], backend: 'pf' };\n`);
    expect(await run(['--config', unknownBackend])).toMatchObject({
      code: 2,
      err: expect.stringContaining('backend: unknown firewall backend "pf"; available: iptables, nftables, dry-run') as unknown,
    });
  });

  it('builds the plugins as the daemon does: one whose constructor throws exits 2 naming the file and its entry', async () => {
    const file = configFile(
      `import { definePlugin } from ${JSON.stringify(PUBLIC_API)};\n` +
        `class Broken { constructor() { throw new TypeError('no token for me'); } }\n` +
        `const broken = definePlugin({ name: 'broken', create: () => new Broken() });\n` +
        `export default { lan: ['br-lan'], backend: 'nftables', plugins: [false, broken()] };\n`,
    );
    const r = await run(['--config', file]);
    expect(r).toMatchObject({ code: 2, out: '' });
    expect(r.err).toBe(`upnpd check: ${file}: plugins[1] (broken): could not be created: no token for me\n`);
  });

  it('exits 2 for a file the daemon would refuse for want of a LAN interface (not in dry-run)', async () => {
    const file = configFile(`export default { backend: 'nftables' };\n`);
    const r = await run(['--config', file]);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`${file}: lan: no LAN interface given`);
    expect((await run(['--config', file, '--dry-run'])).code).toBe(0);
  });
});

describeRequiring('the configuration in /etc/upnpd/, found from any directory', missingPrograms(['unshare', 'mount']), () => {
  it('upnpd check started in / finds /etc/upnpd/upnpd.config.mjs (a private mount namespace holds that /etc)', async () => {
    const bin = join(import.meta.dirname, '..', '..', 'bin', 'upnpd.js');
    const config = 'export default { backend: "nftables", lan: ["lo"] };';
    // Nothing outside the private mount namespace sees the tmpfs over /etc.
    const script = `mount -t tmpfs none /etc && mkdir /etc/upnpd && printf '%s\\n' '${config}' > /etc/upnpd/upnpd.config.mjs && cd / && exec "${process.execPath}" "${bin}" check`;
    const r = await execa('unshare', ['-m', 'sh', '-c', script], { reject: false, timeout: 30_000 });
    expect(r.stdout).toBe(
      '/etc/upnpd/upnpd.config.mjs: valid (plugins: description, lan-target, reserved-ports, remote-host, quota, secure-mode, nftables, logging, nat-pmp)',
    );
    expect(r.exitCode).toBe(0);
  });
});
