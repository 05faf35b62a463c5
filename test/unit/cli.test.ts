import { createSocket } from 'node:dgram';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../core/logger.js';
import { MappingStateFile } from '../../core/mapping/state-file.js';
import { readSavedState } from '../support/saved-state.js';
import { useTempDir } from '../support/temp-dir.js';
import { DESCRIPTION_URL, addPortMappingArgs, soapAction } from '../support/upnpd-process.js';

const REPO = join(import.meta.dirname, '..', '..');
const BIN = join(REPO, 'bin', 'upnpd.js');

interface Run {
  readonly output: () => string;
  readonly exited: Promise<number | null>;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  signal(sig: NodeJS.Signals): void;
}

/** Every daemon a test started; killed after each test, so a failing test leaves none running. */
const started = new Set<ReturnType<typeof spawn>>();
afterEach(() => {
  for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  started.clear();
});

/** Runs the installed entry point (bin/upnpd.js → dist/), as a user would after `npm ci`. */
function upnpd(args: string[], cwd = REPO, options: { readonly fileSizeLimitBlocks?: number } = {}): Run {
  if (!existsSync(join(REPO, 'dist', 'app', 'cli.js'))) throw new Error('dist/ is missing: run `npm run build` (npm test does)');
  // A file-size limit (RLIMIT_FSIZE, in the shell's 512-byte blocks) is set by a shell that then becomes upnpd.
  const limit = options.fileSizeLimitBlocks;
  const [command, commandArgs] =
    limit === undefined ? [process.execPath, [BIN, ...args]] : ['sh', ['-c', `ulimit -f ${limit} && exec "$0" "$@"`, process.execPath, BIN, ...args]];
  const child = spawn(command, commandArgs, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
  started.add(child);
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  void exited.then(() => clearTimeout(killer));
  return {
    output: () => output,
    exited,
    signal: (sig) => child.kill(sig),
    async waitFor(pattern, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const match = output.match(pattern);
        if (match) return match[1] ?? match[0];
        if (child.exitCode !== null) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      throw new Error(`no ${pattern} in upnpd output:\n${output}`);
    },
  };
}

/** Calls a WANIPConnection action of the daemon whose description is at `descriptionUrl`; returns the response body. */
async function soap(descriptionUrl: string, action: string, args: Record<string, string | number> = {}): Promise<string> {
  const description = await (await fetch(descriptionUrl)).text();
  const controlPath = description.match(/WANIPConnection:\d<\/serviceType>[\s\S]*?<controlURL>([^<]+)<\/controlURL>/)![1]!;
  const serviceType = description.match(/urn:schemas-upnp-org:service:WANIPConnection:\d/)![0];
  const body = Object.entries(args)
    .map(([name, value]) => `<${name}>${value}</${name}>`)
    .join('');
  const response = await fetch(new URL(controlPath, descriptionUrl), {
    method: 'POST',
    headers: { 'Content-Type': 'text/xml; charset="utf-8"', SOAPACTION: `"${serviceType}#${action}"` },
    body: `<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><u:${action} xmlns:u="${serviceType}">${body}</u:${action}></s:Body></s:Envelope>`,
  });
  return response.text();
}

/** Saves `count` mappings of 127.0.0.1 in stateDir, as a daemon would have: a start then takes a while to reinstall them. */
async function saveMappingsOfOneClient(stateDir: string, count: number): Promise<void> {
  const createdBy = { address: '127.0.0.1', via: 'upnp-igd:2' };
  const saved = Array.from({ length: count }, (_, i) => ({
    ...{ remoteHost: '', externalPort: 20_000 + i, protocol: 'TCP' as const, internalClient: '127.0.0.1', internalPort: 20_000 + i },
    ...{ enabled: true, description: 'kept', leaseSeconds: 3600, expiresAt: 0, createdBy },
  }));
  await new MappingStateFile(stateDir, silentLogger).save(saved, () => 3_600_000);
}

describe('the upnpd command', () => {
  it('starts in dry-run on loopback, prints the description URL, and stops cleanly on SIGTERM', async () => {
    const run = upnpd(['--dry-run', '--log-level', 'info']);
    const url = await run.waitFor(DESCRIPTION_URL);
    const response = await fetch(url);
    expect(response.status).toBe(200);
    expect(await response.text()).toContain('urn:schemas-upnp-org:device:InternetGatewayDevice');
    run.signal('SIGTERM');
    expect(await run.exited).toBe(0);
    expect(run.output()).toMatch(/upnpd stopped/);
  });

  it('in dry-run without a WAN reports the documentation address 203.0.113.1 as external, so mapping works on a laptop', async () => {
    const run = upnpd(['--dry-run']);
    try {
      const url = await run.waitFor(DESCRIPTION_URL);
      const description = await (await fetch(url)).text();
      const controlPath = description.match(/WANIPConnection:\d<\/serviceType>[\s\S]*?<controlURL>([^<]+)<\/controlURL>/)![1]!;
      const serviceType = description.match(/urn:schemas-upnp-org:service:WANIPConnection:\d/)![0];
      const response = await fetch(new URL(controlPath, url), {
        method: 'POST',
        headers: { 'Content-Type': 'text/xml; charset="utf-8"', SOAPACTION: `"${serviceType}#GetExternalIPAddress"` },
        body: `<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><u:GetExternalIPAddress xmlns:u="${serviceType}"/></s:Body></s:Envelope>`,
      });
      expect(await response.text()).toContain('<NewExternalIPAddress>203.0.113.1</NewExternalIPAddress>');
    } finally {
      run.signal('SIGTERM');
      await run.exited;
    }
  });

  it('with --state-dir keeps the mappings across a restart: saved at shutdown, reinstalled at start with the lease time left', async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'upnpd-state-'));
    try {
      const first = upnpd(['--dry-run', '--log-level', 'info', '--state-dir', stateDir]);
      const url = await first.waitFor(DESCRIPTION_URL);
      const added = await soap(url, 'AddPortMapping', {
        NewRemoteHost: '',
        NewExternalPort: 18080,
        NewProtocol: 'TCP',
        NewInternalPort: 8080,
        NewInternalClient: '127.0.0.1',
        NewEnabled: 1,
        NewPortMappingDescription: 'kept',
        NewLeaseDuration: 3600,
      });
      expect(added).toContain('AddPortMappingResponse');
      first.signal('SIGTERM');
      expect(await first.exited).toBe(0);
      const saved = readSavedState(join(stateDir, 'mappings.json'));
      expect(saved.mappings).toEqual([expect.objectContaining({ externalPort: 18080, internalClient: '127.0.0.1', internalPort: 8080, description: 'kept' })]);

      const second = upnpd(['--dry-run', '--log-level', 'info', '--state-dir', stateDir]);
      try {
        const again = await second.waitFor(DESCRIPTION_URL);
        expect(second.output()).toMatch(/restored 1 mapping\(s\) from .*mappings\.json/);
        // The dry-run backend shows the restored mapping's rule being installed again.
        expect(second.output()).toMatch(/RestorePortMap: Proto:TCP ExtPort:18080 Int:127\.0\.0\.1:8080/);
        const entry = await soap(again, 'GetSpecificPortMappingEntry', { NewRemoteHost: '', NewExternalPort: 18080, NewProtocol: 'TCP' });
        expect(entry).toContain('<NewPortMappingDescription>kept</NewPortMappingDescription>');
        const lease = Number(entry.match(/<NewLeaseDuration>(\d+)<\/NewLeaseDuration>/)![1]);
        expect(lease).toBeGreaterThan(3500);
        expect(lease).toBeLessThanOrEqual(3600);
      } finally {
        second.signal('SIGTERM');
        await second.exited;
      }
    } finally {
      await rm(stateDir, { recursive: true, force: true });
    }
  });

  it('stops cleanly on a SIGTERM that arrives while it is still starting (reinstalling 3000 mappings)', async () => {
    // Inside the repository, so that the config file can import 'upnpd'.
    const stateDir = await mkdtemp(join(REPO, 'test', '.tmp-cli-'));
    try {
      await saveMappingsOfOneClient(stateDir, 3000);
      // 3000 mappings of one client: more than the default quota allows.
      await mkdir(join(stateDir, 'config'));
      const config = join(stateDir, 'config', 'upnpd.config.js');
      await writeFile(config, `import { quota } from 'upnpd';\nexport default { dryRun: true, plugins: [quota({ perClient: 3000 })] };\n`);
      const run = upnpd(['--config', config, '--log-level', 'info', '--state-dir', stateDir]);
      await run.waitFor(/dry-run: no WAN interface given/); // logged as the start begins
      run.signal('SIGTERM');
      expect(await run.exited).toBe(0);
      expect(run.output()).toMatch(/SIGTERM: shutting down once the start has finished/);
      expect(run.output()).toMatch(/restored 3000 mapping\(s\)[\s\S]*removed 3000 mapping\(s\) at shutdown[\s\S]*upnpd stopped/);
    } finally {
      await rm(stateDir, { recursive: true, force: true });
    }
  });

  it('sends its last line, "upnpd stopped", to syslog too, not only to stdout', async () => {
    const receiver = createSocket('udp4');
    const received: string[] = [];
    receiver.on('message', (datagram) => received.push(datagram.toString()));
    await new Promise<void>((resolve) => receiver.bind(0, '127.0.0.1', resolve));
    const dir = await mkdtemp(join(tmpdir(), 'upnpd-syslog-stop-'));
    try {
      const config = join(dir, 'upnpd.config.mjs');
      const { port } = receiver.address();
      await writeFile(
        config,
        `import { logging } from 'upnpd';\nexport default { dryRun: true, plugins: [logging({ syslog: { host: '127.0.0.1', port: ${port} } })] };\n`,
      );
      const run = upnpd(['--config', config, '--log-level', 'info', '--runtime-dir', join(dir, 'run')]);
      await run.waitFor(DESCRIPTION_URL);
      run.signal('SIGTERM');
      expect(await run.exited).toBe(0);
      expect(run.output()).toMatch(/upnpd stopped/);
      expect(received.some((line) => line.includes('SIGTERM: shutting down'))).toBe(true);
      expect(received.filter((line) => line.includes('upnpd stopped'))).toHaveLength(1);
    } finally {
      receiver.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('writes all of `list --json` to a pipe before it exits (a large table is more than a pipe holds)', async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'upnpd-state-'));
    const runtimeDir = join(stateDir, 'run');
    try {
      const file = new MappingStateFile(stateDir, silentLogger);
      // 5 clients of 100 mappings each (within the default quota): about 150 KB of JSON.
      const saved = Array.from({ length: 500 }, (_, i) => {
        const client = `127.0.0.${2 + Math.floor(i / 100)}`;
        return {
          ...{ remoteHost: '', externalPort: 20_000 + i, protocol: 'TCP' as const, internalClient: client, internalPort: 20_000 + i },
          ...{ enabled: true, description: `kept ${'x'.repeat(100)}`, leaseSeconds: 3600, expiresAt: 0, createdBy: { address: client, via: 'upnp-igd:2' } },
        };
      });
      await file.save(saved, () => 3_600_000);
      const daemon = upnpd(['--dry-run', '--log-level', 'info', '--state-dir', stateDir, '--runtime-dir', runtimeDir]);
      try {
        await daemon.waitFor(/control socket/);
        // Through a shell pipe (a FIFO: 64 KiB) to a reader slower than upnpd (`| jq`, `| less`).
        const pipeline = '"$0" "$1" list --json --runtime-dir "$2" | { sleep 0.5; cat; }';
        const list = spawn('sh', ['-c', pipeline, process.execPath, BIN, runtimeDir], { stdio: ['ignore', 'pipe', 'inherit'] });
        started.add(list);
        let output = '';
        list.stdout.on('data', (d) => (output += d));
        const code = await new Promise((resolve) => list.on('close', resolve));
        expect(code).toBe(0);
        expect(output.length).toBeGreaterThan(100_000);
        expect((JSON.parse(output) as { mappings: unknown[] }).mappings).toHaveLength(500);
      } finally {
        daemon.signal('SIGTERM');
        await daemon.exited;
      }
    } finally {
      await rm(stateDir, { recursive: true, force: true });
    }
  });

  it('starts without persistence, saying so, when the state directory cannot be created (the start never fails for the state)', async () => {
    const blocker = await mkdtemp(join(tmpdir(), 'upnpd-state-'));
    try {
      await writeFile(join(blocker, 'file'), 'not a directory');
      const run = upnpd(['--dry-run', '--state-dir', join(blocker, 'file', 'state')]);
      await run.waitFor(/upnpd running/);
      expect(run.output()).toMatch(/cannot write the mapping state to .*file\/state .*running WITHOUT persistence/);
      run.signal('SIGTERM');
      expect(await run.exited).toBe(0);
    } finally {
      await rm(blocker, { recursive: true, force: true });
    }
  });

  it('under a file-size limit, a state write past it fails as on a full disk and the daemon runs on (SIGXFSZ does not end it)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'upnpd-fsize-'));
    try {
      // 4 KiB (8 blocks of 512 bytes): a few journal lines fit, not 40.
      const run = upnpd(['--dry-run', '--runtime-dir', join(dir, 'run'), '--state-dir', join(dir, 'state')], REPO, { fileSizeLimitBlocks: 8 });
      const url = await run.waitFor(DESCRIPTION_URL);
      const answered: number[] = [];
      let refused = false;
      for (let port = 20001; port <= 20040 && !refused; port++) {
        const body = await soap(url, 'AddPortMapping', addPortMappingArgs(port, 'd'.repeat(200), 600));
        if (body.includes('<errorCode>501</errorCode>')) refused = true;
        else answered.push(port);
      }
      expect(refused).toBe(true);
      expect(run.output()).toMatch(/cannot write the mapping state .*EFBIG/);
      // Still serving.
      expect(await soap(url, 'GetExternalIPAddress')).toContain('<NewExternalIPAddress>203.0.113.1</NewExternalIPAddress>');
      run.signal('SIGTERM');
      expect(await run.exited).toBe(0);
      const restored = await new MappingStateFile(join(dir, 'state'), silentLogger).load();
      expect(restored.mappings.map((m) => m.externalPort)).toEqual(answered);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('survives a SIGHUP that comes before its configuration is read, and starts', async () => {
    // A config file that takes a while to load keeps the start in the window before the daemon's
    // own SIGHUP handler; Node's default would end the process there.
    const dir = await mkdtemp(join(tmpdir(), 'upnpd-slow-config-'));
    try {
      await writeFile(join(dir, 'upnpd.config.mjs'), 'export default await new Promise((resolve) => setTimeout(() => resolve({ dryRun: true }), 3000));\n');
      const run = upnpd(['--runtime-dir', join(dir, 'run')], dir);
      await new Promise((resolve) => setTimeout(resolve, 1200));
      run.signal('SIGHUP');
      await run.waitFor(/upnpd running/, 15_000);
      run.signal('SIGTERM');
      expect(await run.exited).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('stops cleanly on SIGINT too', async () => {
    const run = upnpd(['--dry-run']);
    await run.waitFor(/upnpd running/);
    run.signal('SIGINT');
    expect(await run.exited).toBe(0);
  });

  it('exits with status 2 and names the file and key for a bad config', async () => {
    const dir = await mkdtemp(join(REPO, 'test', '.tmp-cli-'));
    try {
      const file = join(dir, 'upnpd.config.js');
      await writeFile(file, 'export default { dryRun: true, lease: { maxSeconds: -1 } };\n');
      const run = upnpd(['--config', file]);
      expect(await run.exited).toBe(2);
      expect(run.output()).toContain(`${file}: lease.maxSeconds:`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('loads a config kept outside any node_modules tree (/etc/upnpd) that imports or requires upnpd by name, as README shows', async () => {
    // /etc/upnpd has no node_modules above it, and `npm link` puts upnpd where ES modules never look.
    const dir = await mkdtemp(join(tmpdir(), 'upnpd-etc-'));
    try {
      await writeFile(
        join(dir, 'upnpd.config.js'),
        "import { defineConfig, logging } from 'upnpd';\nimport { keyString } from 'upnpd/backend';\n" +
          "export default defineConfig({ dryRun: true, lease: { maxSeconds: typeof keyString === 'function' ? 7200 : -1 }, plugins: [logging({ stdout: 'json' })] });\n",
      );
      const esm = upnpd(['check'], dir);
      expect(await esm.exited).toBe(0);
      expect(esm.output()).toContain(`${join(dir, 'upnpd.config.js')}: valid`);

      await rm(join(dir, 'upnpd.config.js'));
      await writeFile(join(dir, 'upnpd.config.cjs'), "const { defineConfig } = require('upnpd');\nmodule.exports = defineConfig({ dryRun: true });\n");
      const cjs = upnpd(['check'], dir);
      expect(await cjs.exited).toBe(0);
      expect(cjs.output()).toContain(`${join(dir, 'upnpd.config.cjs')}: valid`);

      // A package the config names that exists nowhere is still an error naming the file.
      await writeFile(join(dir, 'upnpd.config.cjs'), "require('upnpd-missing-plugin');\nmodule.exports = {};\n");
      const missing = upnpd(['check'], dir);
      expect(await missing.exited).toBe(2);
      expect(missing.output()).toContain(`${join(dir, 'upnpd.config.cjs')}: cannot load: Cannot find module 'upnpd-missing-plugin'`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('exits with status 2 for an unknown flag or a bad flag value, naming the flag', async () => {
    const unknown = upnpd(['--frobnicate']);
    expect(await unknown.exited).toBe(2);
    expect(unknown.output()).toMatch(/Unknown option '--frobnicate'/);
    const bad = upnpd(['--dry-run', '--backend', 'pf']);
    expect(await bad.exited).toBe(2);
    expect(bad.output()).toMatch(/command line --backend: backend: unknown firewall backend "pf"; available: iptables, nftables, dry-run/);
  });

  it('refuses to run without a LAN interface unless in dry-run', async () => {
    const run = upnpd(['--backend', 'iptables', '--wan', 'eth0']);
    expect(await run.exited).toBe(2);
    expect(run.output()).toMatch(/no LAN interface given/);
  });

  it('prints --help and --version', async () => {
    const help = upnpd(['--help']);
    expect(await help.exited).toBe(0);
    expect(help.output()).toMatch(/--dry-run/);
    const version = upnpd(['--version']);
    expect(await version.exited).toBe(0);
    expect(version.output()).toMatch(/^upnpd \d+\.\d+\.\d+/);
  });

  it('on SIGHUP applies a new deny rule and a lower quota to new requests; the mappings already made stay', async () => {
    const dir = await mkdtemp(join(REPO, 'test', '.tmp-cli-'));
    const configWith = (plugins: string) => `import { permissions, quota } from 'upnpd';\nexport default { dryRun: true, plugins: [${plugins}] };\n`;
    const add = (url: string, port: number) =>
      soapAction(url, 'AddPortMapping', {
        ...{ NewRemoteHost: '', NewExternalPort: port, NewProtocol: 'TCP', NewInternalPort: port, NewInternalClient: '127.0.0.1' },
        ...{ NewEnabled: 1, NewPortMappingDescription: 'app', NewLeaseDuration: 3600 },
      });
    const faultOf = (reply: { status: number; body: string }) => (reply.status === 200 ? 0 : Number(/<errorCode>(\d+)<\/errorCode>/.exec(reply.body)?.[1]));
    try {
      const file = join(dir, 'upnpd.config.js');
      await writeFile(file, configWith(`permissions({ rules: [] }), quota({ perClient: 10 })`));
      const run = upnpd(['--config', file]);
      const url = await run.waitFor(DESCRIPTION_URL);
      for (const port of [7000, 7001, 8000]) expect(faultOf(await add(url, port))).toBe(0);
      await writeFile(file, configWith(`permissions({ rules: ['deny 7000-7999 0.0.0.0/0 0-65535'] }), quota({ perClient: 3 })`));
      run.signal('SIGHUP');
      await run.waitFor(/configuration reloaded/);
      expect(faultOf(await add(url, 7500))).toBe(606);
      expect(faultOf(await add(url, 9000))).toBe(728);
      for (const port of [7000, 7001, 8000]) {
        expect((await soapAction(url, 'GetSpecificPortMappingEntry', { NewRemoteHost: '', NewExternalPort: port, NewProtocol: 'TCP' })).status).toBe(200);
      }
      run.signal('SIGTERM');
      expect(await run.exited).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('reads its configuration again once a long start has finished, when a SIGHUP came during it', async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'upnpd-state-'));
    try {
      await saveMappingsOfOneClient(stateDir, 3000);
      await mkdir(join(stateDir, 'config'));
      const config = join(stateDir, 'config', 'upnpd.config.mjs');
      const configWith = (extra: string) => `import { quota } from 'upnpd';\nexport default { dryRun: true, ${extra}plugins: [quota({ perClient: 3000 })] };\n`;
      await writeFile(config, configWith(''));
      const run = upnpd(['--config', config, '--log-level', 'info', '--state-dir', stateDir, '--runtime-dir', join(stateDir, 'run')]);
      await run.waitFor(/dry-run: no WAN interface given/); // logged as the start begins
      await writeFile(config, configWith('httpPort: 5999, '));
      run.signal('SIGHUP');
      await run.waitFor(/these changes need a restart: httpPort/);
      expect(run.output()).toMatch(/SIGHUP during the start[\s\S]*upnpd running[\s\S]*these changes need a restart: httpPort/);
      run.signal('SIGTERM');
      expect(await run.exited).toBe(0);
    } finally {
      await rm(stateDir, { recursive: true, force: true });
    }
  });

  it('reloads on SIGHUP and says which changes need a restart', async () => {
    const dir = await mkdtemp(join(REPO, 'test', '.tmp-cli-'));
    try {
      const file = join(dir, 'upnpd.config.js');
      await writeFile(file, 'export default { dryRun: true, logLevel: "info" };\n');
      const run = upnpd(['--config', file]);
      await run.waitFor(/upnpd running/);
      await writeFile(file, 'export default { dryRun: true, logLevel: "debug", httpPort: 5999 };\n');
      run.signal('SIGHUP');
      await run.waitFor(/these changes need a restart: httpPort/);
      run.signal('SIGTERM');
      expect(await run.exited).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('a config file that fails while it loads or builds', () => {
  const scratch = useTempDir('upnpd-badcfg-');

  it('a config whose import of a CommonJS package fails while it loads exits 2 naming the file, without a crash (Node 20 also reports the error as an unhandled rejection)', async () => {
    const dir = scratch.path;
    await mkdir(join(dir, 'node_modules', 'broken-cjs'), { recursive: true });
    await writeFile(join(dir, 'node_modules', 'broken-cjs', 'package.json'), '{ "name": "broken-cjs", "main": "index.js" }\n');
    await writeFile(join(dir, 'node_modules', 'broken-cjs', 'index.js'), "require('upnpd-nowhere-to-be-found');\nmodule.exports = {};\n");
    for (const line of ["import 'broken-cjs';", "import broken from 'broken-cjs';"]) {
      await writeFile(join(dir, 'upnpd.config.mjs'), `${line}\nexport default { dryRun: true };\n`);
      for (const args of [['check'], ['--runtime-dir', dir]]) {
        const run = upnpd(args, dir);
        expect(await run.exited, `${line} ${args[0]}`).toBe(2);
        expect(run.output()).toContain(`${join(dir, 'upnpd.config.mjs')}: cannot load: Cannot find module 'upnpd-nowhere-to-be-found'`);
        expect(run.output()).not.toMatch(/^Node\.js v|^\s+at /m);
      }
    }
  });

  it('a config whose promise rejects (its default export, a top-level await, one it leaves unhandled) exits 2 naming the file, without a crash', async () => {
    const dir = scratch.path;
    for (const body of [
      "export default Promise.reject(new Error('no secret'));",
      "await Promise.reject(new Error('no secret'));\nexport default { dryRun: true };",
      "Promise.reject(new Error('no secret'));\nexport default { dryRun: true };",
    ]) {
      await writeFile(join(dir, 'upnpd.config.mjs'), `${body}\n`);
      const run = upnpd(['check'], dir);
      expect(await run.exited, body).toBe(2);
      expect(run.output()).toContain(`${join(dir, 'upnpd.config.mjs')}: cannot load: no secret`);
      expect(run.output()).not.toMatch(/^Node\.js v|^\s+at /m);
    }
  });

  it('a plugin whose constructor throws stops the start with exit 2 and a log naming the file and entry, without a stack trace', async () => {
    const dir = scratch.path;
    await writeFile(
      join(dir, 'upnpd.config.mjs'),
      "import { definePlugin } from 'upnpd';\nconst broken = definePlugin({ name: 'broken', create: () => { throw new Error('no token'); } });\n" +
        'export default { dryRun: true, plugins: [broken()] };\n',
    );
    const run = upnpd(['--runtime-dir', dir], dir);
    expect(await run.exited).toBe(2);
    const message = `${join(dir, 'upnpd.config.mjs')}: plugins[0] (broken): could not be created: no token`;
    expect(run.output()).toContain(`upnpd: ${message}\n`);
    const fatal = run
      .output()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { level: number; msg: string; err?: unknown })
      .find((record) => record.level === 60);
    expect(fatal).toMatchObject({ msg: `upnpd could not start: ${message}` });
    expect(fatal?.err).toBeUndefined();
  });
});
