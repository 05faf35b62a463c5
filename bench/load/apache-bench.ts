import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CommandRunner } from '../../core/command-runner.js';
import { soapEnvelope } from './soap-client.js';

/**
 * GetExternalIPAddress sent by ApacheBench (`ab`, Debian's apache2-utils): a C client that spends
 * 10–20 µs of user CPU per request, and the kernel 105–125 µs for its connection, where the
 * generator (Node, bench/load/main.ts) spends 300–400 in all, so that on this 2-core machine the
 * daemon, not the client, is what limits the rate. Each `ab` runs
 * one request at a time on a new connection per request (no `-k`), sent with `Connection: close`,
 * from one LAN host (`-B`); 8 clients are 8 `ab` at once from 8 LAN hosts. ab checks the status
 * (Non-2xx) and that every answer has the first one's length; the answer's content is checked by
 * the generator's rows, which run before.
 */
export interface ApacheBenchRun {
  /** The daemon's WANIPConnection control URL and service type, as discovery found them. */
  readonly controlUrl: URL;
  readonly serviceType: string;
  /** One `ab` per address, each bound to it. */
  readonly sources: readonly string[];
  readonly requestsPerSource: number;
  /** Each `ab` stops after this long even if its requests are not all sent. */
  readonly maxSeconds: number;
  /** Where the request body is written for `ab -p` (a folder the namespace sees). */
  readonly workDir: string;
}

export interface ApacheBenchResult {
  /** Requests answered, all `ab` together. */
  readonly requests: number;
  /** Seconds of the slowest `ab` (they start together). */
  readonly seconds: number;
}

/** What one `ab` printed that the bench uses. */
export interface ApacheBenchReport {
  readonly complete: number;
  readonly failed: number;
  readonly non2xx: number;
  readonly seconds: number;
  readonly documentLength: number;
}

/** A wait for an answer: ab's default is 30 s. */
const SOCKET_TIMEOUT_SECONDS = 10;

export async function runApacheBench(runner: CommandRunner, run: ApacheBenchRun): Promise<ApacheBenchResult> {
  const action = 'GetExternalIPAddress';
  const bodyFile = join(run.workDir, 'ab-get-external-ip.xml');
  writeFileSync(bodyFile, soapEnvelope(run.serviceType, action, {}));
  const args = (source: string) => [
    '-q',
    // -t first: it sets -n to 50000, which the -n after it replaces.
    ...['-t', String(run.maxSeconds), '-n', String(run.requestsPerSource), '-c', '1'],
    ...['-s', String(SOCKET_TIMEOUT_SECONDS), '-B', source],
    ...['-p', bodyFile, '-T', 'text/xml; charset="utf-8"'],
    ...['-H', `SOAPAction: "${run.serviceType}#${action}"`, '-H', 'Connection: close'],
    run.controlUrl.href,
  ];
  const timeoutMs = (run.maxSeconds + 2 * SOCKET_TIMEOUT_SECONDS) * 1000;
  const outputs = await Promise.all(run.sources.map((source) => runner.run('ab', args(source), { timeoutMs })));
  const reports = outputs.map((output, i) => {
    if (output.exitCode !== 0) throw new Error(`ab from ${run.sources[i]} exited ${output.exitCode}: ${(output.stderr || output.stdout).slice(0, 300)}`);
    const report = parseApacheBenchOutput(output.stdout);
    if (report.failed > 0 || report.non2xx > 0 || report.documentLength === 0) {
      throw new Error(`ab from ${run.sources[i]}: ${report.failed} failed, ${report.non2xx} not 2xx, answers of ${report.documentLength} bytes`);
    }
    return report;
  });
  return { requests: reports.reduce((sum, r) => sum + r.complete, 0), seconds: Math.max(...reports.map((r) => r.seconds)) };
}

/** The figures of ab's report (`Complete requests:`, …); `Non-2xx responses:` appears only when there are some. */
export function parseApacheBenchOutput(text: string): ApacheBenchReport {
  const field = (name: string, required: boolean): number => {
    const match = new RegExp(`^${name}:\\s+([\\d.]+)`, 'm').exec(text);
    if (!match) {
      if (required) throw new Error(`ab's report has no "${name}": ${text.slice(0, 300)}`);
      return 0;
    }
    return Number(match[1]);
  };
  return {
    complete: field('Complete requests', true),
    failed: field('Failed requests', true),
    non2xx: field('Non-2xx responses', false),
    seconds: field('Time taken for tests', true),
    documentLength: field('Document Length', true),
  };
}
