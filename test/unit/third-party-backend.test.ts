import 'reflect-metadata';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { BackendSpec, CommandRunner, RuleSpec } from 'upnpd';
import { backendFromSpec, describeBackendConformance } from 'upnpd/testing';
import { DESCRIPTION_URL, killStartedDaemons, soapAction, startUpnpd, type UpnpdRun } from '../support/upnpd-process.js';

/*
 * The architecture issue's "Done means": a third-party backend in a folder outside the repository,
 * importing only the package's public entry ('upnpd'), listed in a config file, is chosen with
 * `--backend its-name`, passes describeBackendConformance, and is imitated by `--dry-run` (its
 * rendered change logged when a client maps, its `apply` never called).
 *
 * The folder is made as an installed package would see upnpd: node_modules/upnpd is a link to this
 * repository, so Node resolves 'upnpd' through package.json "exports" to dist/ (the daemon runs
 * from dist/ too). Inside vitest the same module is imported with 'upnpd' aliased to the sources.
 */

const REPO = join(import.meta.dirname, '..', '..');

/**
 * A firewall backend over a JSON file: the "firewall" is `options.path`. Plain JavaScript, as a
 * third-party author might write it without a build step; it imports nothing of upnpd but 'upnpd'.
 * Every apply call is appended to apply-calls.log next to the file, so that a test can tell it
 * was (or was not) called.
 */
const FILE_BACKEND = String.raw`
import { access, appendFile, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import { dirname, join } from 'node:path';
import { BackendError, defineBackend } from 'upnpd';

const keyOf = (rule) => rule.protocol + '/' + rule.externalPort + '/' + rule.remoteHost;
const ruleOf = (rule) => ({
  remoteHost: rule.remoteHost,
  externalPort: rule.externalPort,
  protocol: rule.protocol,
  internalClient: rule.internalClient,
  internalPort: rule.internalPort,
});
const describeRule = (rule) =>
  rule.protocol + ' ' + rule.externalPort + (rule.remoteHost ? ' from ' + rule.remoteHost : '') + ' -> ' + rule.internalClient + ':' + rule.internalPort;

class FileFirewall {
  constructor(path, logger) {
    this.path = path;
    this.logger = logger;
  }

  async probe() {
    try {
      await access(dirname(this.path), constants.W_OK);
    } catch (err) {
      throw new BackendError('file-fw: cannot write in ' + dirname(this.path) + ': ' + err.message, { cause: err });
    }
    return { dialect: 'file-fw', remoteHost: true, details: { path: this.path } };
  }

  async init() {
    if ((await this.read()) === undefined) await this.write([]);
  }

  async apply(changes) {
    await appendFile(join(dirname(this.path), 'apply-calls.log'), JSON.stringify(changes) + '\n');
    const installed = await this.read();
    if (installed === undefined) throw new BackendError('file-fw: ' + this.path + ' does not exist (init was not called)');
    const rules = new Map(installed.map((rule) => [keyOf(rule), rule]));
    for (const rule of changes.remove) {
      if (!rules.delete(keyOf(rule))) throw new BackendError('file-fw: cannot remove ' + keyOf(rule) + ': not installed');
    }
    for (const rule of changes.add) rules.set(keyOf(rule), ruleOf(rule));
    await this.write([...rules.values()]);
    this.logger.debug('file-fw: ' + rules.size + ' rule(s) in ' + this.path);
  }

  async list() {
    return ((await this.read()) ?? []).map(ruleOf);
  }

  async shutdown() {
    await rm(this.path, { force: true });
  }

  render(changes, _installed) {
    return [
      ...changes.remove.map((rule) => 'file-fw: remove ' + describeRule(rule)),
      ...changes.add.map((rule) => 'file-fw: add ' + describeRule(rule)),
    ].join('\n');
  }

  async read() {
    let text;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if (err.code === 'ENOENT') return undefined;
      throw new BackendError('file-fw: cannot read ' + this.path + ': ' + err.message, { cause: err });
    }
    return JSON.parse(text).rules;
  }

  /** Atomic: the new rules are written to a temporary file that then replaces the old one. */
  async write(rules) {
    const temporary = this.path + '.' + process.pid + '.tmp';
    await writeFile(temporary, JSON.stringify({ rules }, null, 2) + '\n');
    await rename(temporary, this.path);
  }
}

export const fileFirewall = defineBackend({
  name: 'file-fw',
  create({ options, logger }) {
    if (typeof options.path !== 'string' || options.path === '') throw new BackendError('file-fw: options.path must name the rules file');
    return new FileFirewall(options.path, logger);
  },
});
`;

const CONFIG = String.raw`
import { fileURLToPath } from 'node:url';
import { fileFirewall } from './file-backend.mjs';

export default {
  logLevel: 'info',
  plugins: [fileFirewall({ path: fileURLToPath(new URL('./firewall/rules.json', import.meta.url)) })],
};
`;

/** The third-party folder: created before the tests of this file, removed after them. */
let outside = '';
const backendModule = () => join(outside, 'file-backend.mjs');
const configFile = () => join(outside, 'upnpd.config.mjs');
const firewallDir = () => join(outside, 'firewall');
const rulesFile = () => join(firewallDir(), 'rules.json');
const applyCalls = () => join(firewallDir(), 'apply-calls.log');

beforeAll(() => {
  outside = mkdtempSync(join(tmpdir(), 'upnpd-third-party-'));
  mkdirSync(join(outside, 'node_modules'));
  symlinkSync(REPO, join(outside, 'node_modules', 'upnpd'), 'dir');
  writeFileSync(join(outside, 'package.json'), JSON.stringify({ name: 'upnpd-file-fw', private: true, type: 'module' }, null, 2));
  writeFileSync(backendModule(), FILE_BACKEND);
  writeFileSync(configFile(), CONFIG);
});

afterAll(() => {
  if (outside) rmSync(outside, { recursive: true, force: true });
});

/** The backend factory, imported from the third-party folder. */
async function importFileFirewall(): Promise<(options: { path: string }) => BackendSpec> {
  const module = (await import(pathToFileURL(backendModule()).href)) as { fileFirewall: (options: { path: string }) => BackendSpec };
  return module.fileFirewall;
}

/** The backend runs no command. */
const noCommands: CommandRunner = {
  run: () => Promise.reject(new Error('file-fw ran a command')),
  start: () => {
    throw new Error('file-fw started a command');
  },
};

describe('a third-party backend package', () => {
  it('lives outside the repository and imports nothing of upnpd but its public entry', () => {
    expect(relative(REPO, outside).startsWith('..')).toBe(true);
    const specifiers = [...readFileSync(backendModule(), 'utf8').matchAll(/^import .* from '([^']+)';$/gm)].map((m) => m[1]);
    expect(specifiers.filter((s) => !s?.startsWith('node:'))).toEqual(['upnpd']);
  });

  it("resolves 'upnpd' through the package's exports to the build, as an installed package would", () => {
    const resolveFrom = createRequire(backendModule());
    expect(resolveFrom.resolve('upnpd')).toBe(join(REPO, 'dist', 'core', 'index.js'));
  });
});

// The contract, for a backend built from the spec the third-party module exports (a fresh rules
// directory per test).
describeBackendConformance('file-fw (third-party, plain JavaScript)', async () => {
  const fileFirewall = await importFileFirewall();
  const dir = mkdtempSync(join(outside, 'conformance-'));
  const spec = fileFirewall({ path: join(dir, 'rules.json') });
  return {
    backend: backendFromSpec(spec, { commands: noCommands }),
    teardown: () => rm(dir, { recursive: true, force: true }),
  };
});

describe('the upnpd command with a third-party backend listed in the config', () => {
  const MAPPING = {
    NewRemoteHost: '',
    NewExternalPort: 8080,
    NewProtocol: 'TCP',
    NewInternalPort: 8080,
    NewInternalClient: '127.0.0.1',
    NewEnabled: 1,
    NewPortMappingDescription: 'third-party backend test',
    NewLeaseDuration: 3600,
  };
  const RENDERED = 'file-fw: add TCP 8080 -> 127.0.0.1:8080';

  beforeEach(() => {
    rmSync(firewallDir(), { recursive: true, force: true });
    mkdirSync(firewallDir());
  });

  afterEach(() => killStartedDaemons());

  const runtimeDir = () => join(outside, 'run');
  /** The daemon on file-fw, not in dry-run (LAN on loopback), its control socket in the test's folder. */
  const firewallArgs = () => [
    '--config',
    configFile(),
    '--backend',
    'file-fw',
    '--lan',
    'lo',
    '--external-ip',
    '203.0.113.1',
    '--http-port',
    '0',
    '--runtime-dir',
    runtimeDir(),
  ];

  /** Stops a daemon with SIGTERM and expects a clean exit. */
  async function stop(run: UpnpdRun): Promise<void> {
    run.signal('SIGTERM');
    expect(await run.exitCode()).toBe(0);
  }

  it('--dry-run imitates it: a client maps, its rendered change is logged, its apply is never called', { timeout: 30_000 }, async () => {
    const run = startUpnpd(['--config', configFile(), '--backend', 'file-fw', '--dry-run', '--http-port', '0'], { cwd: outside });
    const url = await run.waitFor(DESCRIPTION_URL);
    const added = await soapAction(url, 'AddPortMapping', MAPPING);
    expect(added.body).toContain('AddPortMappingResponse');
    await run.waitFor(/file-fw: add TCP 8080/);
    const shown = run.records().find((r) => typeof r.msg === 'string' && r.msg.split('\n').includes(RENDERED));
    expect(shown, run.output()).toMatchObject({ plugin: 'dry-run', imitates: 'file-fw', script: RENDERED });
    await stop(run);
    expect(existsSync(applyCalls())).toBe(false);
    expect(existsSync(rulesFile())).toBe(false);
  });

  it('--backend file-fw (no dry-run, LAN on loopback) installs the mapping through it, and its shutdown runs on SIGTERM', { timeout: 30_000 }, async () => {
    const run = startUpnpd(firewallArgs(), { cwd: outside });
    const url = await run.waitFor(DESCRIPTION_URL);
    // The description URL is printed when UPnP listens; "running" once every front-end (NAT-PMP too) does.
    await run.waitFor(/upnpd running: backend file-fw;/);
    expect(JSON.parse(readFileSync(rulesFile(), 'utf8'))).toEqual({ rules: [] }); // init made it

    const added = await soapAction(url, 'AddPortMapping', MAPPING);
    expect(added.body).toContain('AddPortMappingResponse');
    const expected: RuleSpec = { remoteHost: '', externalPort: 8080, protocol: 'TCP', internalClient: '127.0.0.1', internalPort: 8080 };
    expect(JSON.parse(readFileSync(rulesFile(), 'utf8'))).toEqual({ rules: [expected] });
    expect(readFileSync(applyCalls(), 'utf8').trim().split('\n')).toHaveLength(1);

    await stop(run);
    expect(existsSync(rulesFile())).toBe(false);
    // The mapping was removed through apply at shutdown, before the backend's shutdown removed the file.
    const calls = readFileSync(applyCalls(), 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as unknown);
    expect(calls).toEqual([
      { remove: [], add: [expected] },
      { remove: [expected], add: [] },
    ]);
  });

  it(
    "a second daemon changing the firewall with the same runtime directory is refused, naming the first one; the first one's rules stay",
    { timeout: 30_000 },
    async () => {
      const first = startUpnpd(firewallArgs(), { cwd: outside });
      const url = await first.waitFor(DESCRIPTION_URL);
      await first.waitFor(/upnpd running: backend file-fw;/);
      expect((await soapAction(url, 'AddPortMapping', MAPPING)).body).toContain('AddPortMappingResponse');
      const rules = readFileSync(rulesFile(), 'utf8');

      // By hand, with no state directory of its own: only the runtime directory is shared.
      const second = startUpnpd(firewallArgs(), { cwd: outside });
      expect(await second.exitCode()).toBe(1);
      const pid = first.records()[0]!.pid as number;
      expect(second.output()).toContain(
        `another upnpd (pid ${pid}) is running on the runtime directory ${runtimeDir()} and changes this host's firewall; not starting a second one`,
      );
      // Its backend never started: the first one's rules are as they were, and apply was called once (the mapping).
      expect(readFileSync(rulesFile(), 'utf8')).toBe(rules);
      expect(readFileSync(applyCalls(), 'utf8').trim().split('\n')).toHaveLength(1);
      // A dry-run one changes no firewall: it may share the runtime directory (it serves no control socket then).
      const dryRun = startUpnpd(['--config', configFile(), '--backend', 'file-fw', '--dry-run', '--http-port', '0', '--runtime-dir', runtimeDir()], {
        cwd: outside,
      });
      await dryRun.waitFor(/upnpd running/);
      await stop(dryRun);
      await stop(first);
    },
  );

  it('an unknown --backend exits with status 2 and lists the available backends, the listed one included', async () => {
    const run = startUpnpd(['--config', configFile(), '--backend', 'nope'], { cwd: outside });
    expect(await run.exitCode()).toBe(2);
    expect(run.output()).toMatch(/unknown firewall backend "nope"; available: iptables, nftables, dry-run, file-fw/);
  });
});
