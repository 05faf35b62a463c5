// `npx tsx bench/loopback-ab.ts [--build NAME=DIR[@NODE_FLAG...]]... [--floor] [--rounds N] [--batch N] [--concurrency N] [--entries N]`:
// an A/B of upnpd builds on loopback, for changes too small for the testbed's sequential phases on
// a shared machine. Every build (a folder with its `bin/` and `dist/`, `node_modules` linked in;
// this tree by default) runs at once as a dry-run daemon on 127.0.0.1, with Node's floor too
// (--floor); the requests (GetExternalIPAddress, or with --entries N GetGenericPortMappingEntry
// over N mappings, on a new connection each, `Connection: Close`) go to them in short batches
// taking turns, so that the machine's other load falls on all of them alike. Prints each one's CPU
// time per request (all its threads, from /proc/PID/task/*/schedstat) per round, the medians,
// and the median of the per-round differences to the first build. Loopback only; bounded by
// rounds × batch requests and 15 minutes.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { floorProgram } from './daemons/node-floor.js';
import { shebangOf } from './daemons/upnpd.js';
import { median } from './figures.js';
import { findWanIpConnection } from './load/description.js';
import { HttpClient } from './load/http-client.js';
import { benchMappingArgs } from './load/protocol.js';
import { SoapClient } from './load/soap-client.js';

const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url));
const FIRST_PORT = 40100;
const TIME_LIMIT_MS = 15 * 60_000;

const { values } = parseArgs({
  options: {
    build: { type: 'string', multiple: true },
    floor: { type: 'boolean', default: false },
    rounds: { type: 'string', default: '16' },
    batch: { type: 'string', default: '1500' },
    concurrency: { type: 'string', default: '1' },
    entries: { type: 'string' },
  },
});
const rounds = Number(values.rounds);
const batch = Number(values.batch);
const concurrency = Number(values.concurrency);
const entries = values.entries === undefined ? 0 : Number(values.entries);

/** A config file that lets the one loopback client add `entries` mappings at full speed, for the build at `root`. */
function unlimitedConfig(root: string, port: number): string {
  const file = join(runtimeDir, `upnpd-${port}.config.mjs`);
  const limits = { stateChanges: { burst: 100_000, perSecond: 100_000 } };
  const quota = { perClient: 100_000, total: 100_000 };
  const api = pathToFileURL(join(root, 'dist/core/index.js')).href;
  writeFileSync(file, `import { quota } from '${api}';\nexport default { limits: ${JSON.stringify(limits)}, plugins: [quota(${JSON.stringify(quota)})] };\n`);
  return file;
}

interface Daemon {
  readonly name: string;
  readonly process: ChildProcess;
  soap?: SoapClient;
}

/** CPU microseconds of every thread of `pid` so far. */
function cpuMicros(pid: number): number {
  let nanos = 0;
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      nanos += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // The thread ended since the listing.
    }
  }
  return nanos / 1000;
}

async function answering(url: URL, name: string): Promise<void> {
  for (let attempt = 0; attempt < 600; attempt++) {
    try {
      await new HttpClient(undefined, 'close').request(url, { method: 'GET' });
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw new Error(`${name} does not answer on ${url.href}`);
}

const daemons: Daemon[] = [];
const runtimeDir = mkdtempSync(join(tmpdir(), 'upnpd-ab-'));
const stopAll = () => {
  for (const d of daemons) d.process.kill('SIGTERM');
};
setTimeout(() => {
  process.stderr.write('time limit reached\n');
  stopAll();
  process.exit(3);
}, TIME_LIMIT_MS).unref();

try {
  for (const spec of values.build ?? [`upnpd=${REPO_ROOT}`]) {
    const [name, rest] = [spec.slice(0, spec.indexOf('=')), spec.slice(spec.indexOf('=') + 1)];
    const [root, ...nodeFlags] = rest.split('@');
    const port = FIRST_PORT + daemons.length;
    const entry = join(root!, 'bin/upnpd.js');
    // As its shebang runs it, plus the flags given.
    const shebang = shebangOf(entry);
    const args = [...shebang.variables, process.execPath, ...shebang.nodeFlags, ...nodeFlags, entry];
    args.push('--dry-run', '--no-ipv6', '--log-level', 'warn', '--http-port', String(port), '--runtime-dir', join(runtimeDir, String(port)));
    // One client adds every mapping of the walk: the default rate and quota would refuse most.
    if (entries > 0) args.push('--config', unlimitedConfig(root!, port));
    daemons.push({ name, process: spawn('env', args, { stdio: ['ignore', 'ignore', 'ignore'] }) });
    await answering(new URL(`http://127.0.0.1:${port}/rootDesc.xml`), name);
  }
  if (values.floor) {
    const port = FIRST_PORT + 99;
    const shebang = shebangOf(join(REPO_ROOT, 'bin/upnpd.js'));
    const floor = spawn(
      'env',
      [
        ...shebang.variables,
        process.execPath,
        ...shebang.nodeFlags,
        '--input-type=module',
        '-e',
        floorProgram('127.0.0.1', port, '203.0.113.1', { entries: 0, client: '127.0.0.1' }),
      ],
      { stdio: ['ignore', 'ignore', 'ignore'] },
    );
    daemons.push({ name: 'node:http floor', process: floor });
    await answering(new URL(`http://127.0.0.1:${port}/rootDesc.xml`), 'node:http floor');
  }
  const http = new HttpClient(undefined, 'close');
  for (const [i, d] of daemons.entries()) {
    const url = new URL(`http://127.0.0.1:${d.name === 'node:http floor' ? FIRST_PORT + 99 : FIRST_PORT + i}/rootDesc.xml`);
    const endpoint = findWanIpConnection((await http.request(url, { method: 'GET' })).body, url);
    d.soap = new SoapClient(endpoint.controlUrl, endpoint.serviceType, http);
    for (let port = 20000; port < 20000 + entries; port++) {
      await d.soap.call('AddPortMapping', benchMappingArgs('127.0.0.1', port));
    }
  }
  const run = async (d: Daemon, count: number) => {
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < count) {
          const i = next++;
          if (entries > 0) await d.soap!.callExpecting('GetGenericPortMappingEntry', { NewPortMappingIndex: i % entries }, 'NewExternalPort');
          else await d.soap!.callExpecting('GetExternalIPAddress', {}, 'NewExternalIPAddress');
        }
      }),
    );
  };
  // Unmeasured: V8 compiles the hot paths.
  for (const d of daemons) await run(d, 3000);
  const perRequest = new Map<string, number[]>(daemons.map((d) => [d.name, []]));
  for (let round = 0; round < rounds; round++) {
    for (const d of round % 2 === 0 ? daemons : [...daemons].reverse()) {
      const before = cpuMicros(d.process.pid!);
      await run(d, batch);
      perRequest.get(d.name)!.push((cpuMicros(d.process.pid!) - before) / batch);
    }
  }
  const what = `${entries > 0 ? `GetGenericPortMappingEntry over ${entries}` : 'GetExternalIPAddress'}, ${concurrency} at a time, new connection each`;
  process.stdout.write(`${what}: daemon CPU µs per request, ${rounds} rounds of ${batch}\n`);
  const first = perRequest.get(daemons[0]!.name)!;
  for (const [name, samples] of perRequest) {
    const differences = samples.map((s, i) => s - first[i]!);
    process.stdout.write(
      `${name}: median ${median(samples).toFixed(1)}, paired difference to ${daemons[0]!.name} ${median(differences).toFixed(1)} [${samples.map((s) => s.toFixed(0)).join(' ')}]\n`,
    );
  }
} finally {
  stopAll();
  rmSync(runtimeDir, { recursive: true, force: true });
}
