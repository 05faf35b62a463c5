import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { CommandResult, CommandRunner } from '../../core/command-runner.js';
import { parseApacheBenchOutput, runApacheBench } from '../load/apache-bench.js';

/** The report of ApacheBench 2.3 (Debian 12's apache2-utils) for 200 requests, trimmed after the figures the bench reads. */
const REPORT = `This is ApacheBench, Version 2.3 <$Revision$>
Benchmarking 192.168.77.1 (be patient).....done


Server Software:        Linux/6.18.44
Server Hostname:        192.168.77.1
Server Port:            49152

Document Path:          /igd2/WANIPConn/control
Document Length:        372 bytes

Concurrency Level:      1
Time taken for tests:   0.155 seconds
Complete requests:      200
Failed requests:        0
Total transferred:      113800 bytes
Requests per second:    1292.13 [#/sec] (mean)
`;

describe("ApacheBench's report", () => {
  it('gives the requests completed, the failures, the time and the answer length', () => {
    expect(parseApacheBenchOutput(REPORT)).toEqual({ complete: 200, failed: 0, non2xx: 0, seconds: 0.155, documentLength: 372 });
  });

  it('counts answers that are not 2xx, a line ab prints only when there are some', () => {
    const refused = REPORT.replace('Total transferred:', 'Non-2xx responses:      200\nTotal transferred:');
    expect(parseApacheBenchOutput(refused).non2xx).toBe(200);
  });

  it('refuses a report without its figures (ab failed before measuring)', () => {
    expect(() => parseApacheBenchOutput('apr_socket_connect(): Connection refused (111)\n')).toThrow(/Complete requests/);
  });
});

describe('runApacheBench', () => {
  let workDir: string | undefined;
  afterEach(() => {
    if (workDir) rmSync(workDir, { recursive: true, force: true });
    workDir = undefined;
  });

  /** A runner that answers every `ab` with `stdout` and records the arguments and the body file it named. */
  function fakeAb(stdout: (source: string) => string) {
    const calls: { args: readonly string[]; body: string }[] = [];
    const runner: CommandRunner = {
      run(file, args): Promise<CommandResult> {
        if (file !== 'ab') throw new Error(`unexpected ${file}`);
        calls.push({ args, body: readFileSync(args[args.indexOf('-p') + 1]!, 'utf8') });
        return Promise.resolve({ exitCode: 0, stdout: stdout(args[args.indexOf('-B') + 1]!), stderr: '' });
      },
      start() {
        throw new Error('not used');
      },
    };
    return { runner, calls };
  }

  const run = (sources: readonly string[]) => ({
    controlUrl: new URL('http://192.168.77.1:49152/igd2/WANIPConn/control'),
    serviceType: 'urn:schemas-upnp-org:service:WANIPConnection:2',
    sources,
    requestsPerSource: 1000,
    maxSeconds: 5,
    workDir: (workDir = mkdtempSync(join(tmpdir(), 'ab-test-'))),
  });

  it('runs one ab per LAN host, each bound to it, and adds up their requests over the slowest one', async () => {
    const { runner, calls } = fakeAb((source) => (source.endsWith('.11') ? REPORT : REPORT.replace('0.155 seconds', '0.310 seconds')));
    const result = await runApacheBench(runner, run(['192.168.77.10', '192.168.77.11']));
    expect(result).toEqual({ requests: 400, seconds: 0.31 });
    expect(calls.map((c) => c.args[c.args.indexOf('-B') + 1])).toEqual(['192.168.77.10', '192.168.77.11']);
    const args = calls[0]!.args.join(' ');
    // One request at a time, a new connection each (no -k), as miniupnpc sends them.
    expect(args).toContain('-n 1000 -c 1');
    expect(args).not.toMatch(/ -k( |$)/);
    expect(args).toContain('SOAPAction: "urn:schemas-upnp-org:service:WANIPConnection:2#GetExternalIPAddress"');
    expect(args).toContain('Connection: close');
    expect(calls[0]!.args.at(-1)).toBe('http://192.168.77.1:49152/igd2/WANIPConn/control');
    expect(calls[0]!.body).toMatch(/<u:GetExternalIPAddress xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:2"><\/u:GetExternalIPAddress>/);
  });

  it('fails when any answer was not 2xx or the lengths differed', async () => {
    const { runner } = fakeAb((source) => (source.endsWith('.11') ? REPORT.replace('Failed requests:        0', 'Failed requests:        3') : REPORT));
    await expect(runApacheBench(runner, run(['192.168.77.10', '192.168.77.11']))).rejects.toThrow(/192\.168\.77\.11: 3 failed/);
  });
});
