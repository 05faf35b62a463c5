/**
 * Memory under a one-host mapping flood (issue 13): N AddPortMapping requests from 127.0.0.1, each
 * with a 15 KB description, against a loopback dry-run upnpd started as deployed (bin/upnpd.js
 * executed, so its memory flags apply). Prints the daemon's peak and final RSS and the answers by
 * fault code. Bounded: N requests (default 20,000) and a time limit (default 10 minutes).
 *
 *   npx tsx bench/policy-rss.ts [requests] [--config FILE]
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DESCRIPTION_URL, addPortMappingArgs } from '../test/support/upnpd-process.js';
import { findWanIpConnection } from './load/description.js';
import { HttpClient } from './load/http-client.js';
import { SoapClient, SoapFault } from './load/soap-client.js';

const DAEMON_ENTRY = fileURLToPath(new URL('../bin/upnpd.js', import.meta.url));
const DESCRIPTION_BYTES = 15 * 1024;
const CONCURRENCY = 8;
const TIME_LIMIT_MS = 10 * 60_000;
const SAMPLE_MS = 100;

const args = process.argv.slice(2);
const configAt = args.indexOf('--config');
const configArgs = configAt >= 0 ? ['--config', args[configAt + 1]!] : [];
const requests = Number(args.find((a, i) => /^\d+$/.test(a) && args[i - 1] !== '--config') ?? 20_000);

function rssKb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) : 0;
}

const daemon = spawn(DAEMON_ENTRY, ['--dry-run', '--log-level', 'info', ...configArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
let output = '';
daemon.stdout.on('data', (d: Buffer) => (output += d.toString()));
daemon.stderr.on('data', (d: Buffer) => (output += d.toString()));
const deadline = Date.now() + TIME_LIMIT_MS;
try {
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no URL from upnpd:\n${output}`)), 20_000);
    const check = () => {
      const match = DESCRIPTION_URL.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      } else setTimeout(check, 50);
    };
    check();
  });
  const http = new HttpClient();
  const descriptionUrl = new URL(url);
  const description = await http.request(descriptionUrl, { method: 'GET', headers: {} });
  const endpoint = findWanIpConnection(description.body, descriptionUrl);
  const soap = new SoapClient(endpoint.controlUrl, endpoint.serviceType, http);
  const pid = daemon.pid!;
  const startKb = rssKb(pid, 'VmRSS');
  let peakKb = startKb;
  const sampler = setInterval(() => (peakKb = Math.max(peakKb, rssKb(pid, 'VmRSS'))), SAMPLE_MS);
  const answers = new Map<string, number>();
  const text = 'x'.repeat(DESCRIPTION_BYTES);
  let next = 0;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < requests && Date.now() < deadline) {
        const i = next++;
        const port = 10_000 + i;
        let answer = 'ok';
        try {
          await soap.call('AddPortMapping', addPortMappingArgs(port, text));
        } catch (err) {
          answer = err instanceof SoapFault ? String(err.code) : (err as Error).message.slice(0, 80);
        }
        answers.set(answer, (answers.get(answer) ?? 0) + 1);
      }
    }),
  );
  clearInterval(sampler);
  const seconds = (Date.now() - started) / 1000;
  http.close();
  console.log(
    JSON.stringify({
      requests: next,
      seconds,
      descriptionBytes: DESCRIPTION_BYTES,
      answers: Object.fromEntries(answers),
      rssStartMB: +(startKb / 1024).toFixed(1),
      rssPeakSampledMB: +(peakKb / 1024).toFixed(1),
      rssHighWaterMB: +(rssKb(pid, 'VmHWM') / 1024).toFixed(1),
      rssEndMB: +(rssKb(pid, 'VmRSS') / 1024).toFixed(1),
    }),
  );
} finally {
  daemon.kill('SIGTERM');
}
