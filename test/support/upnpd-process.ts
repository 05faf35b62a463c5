import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';

const REPO = join(import.meta.dirname, '..', '..');
const BIN = join(REPO, 'bin', 'upnpd.js');

/**
 * The loopback description URL in the daemon's "upnpd running" line, logged once every front-end
 * answers (UPnP's own "listening" line comes before NAT-PMP is bound). Group 1 is the URL.
 */
export const DESCRIPTION_URL = /upnpd running[^\n]*?(http:\/\/127\.0\.0\.1:\d+\/[^\s"';]+?\.xml)/;

/** The arguments of an AddPortMapping of TCP `port` to the same port of 127.0.0.1 (the loopback daemon's client). */
export function addPortMappingArgs(port: number, description: string, leaseSeconds = 3600): Record<string, string | number> {
  return {
    NewRemoteHost: '',
    NewExternalPort: port,
    NewProtocol: 'TCP',
    NewInternalPort: port,
    NewInternalClient: '127.0.0.1',
    NewEnabled: 1,
    NewPortMappingDescription: description,
    NewLeaseDuration: leaseSeconds,
  };
}

/** One run of the real `upnpd` command (bin/upnpd.js → dist/), as a user would start it after `npm ci`. */
export interface UpnpdRun {
  /** Everything it wrote so far, stdout and stderr interleaved. */
  output(): string;
  /** Its log records so far (the JSON lines of its output; other lines are left out). */
  records(): Array<Record<string, unknown>>;
  /** Resolves with the exit status (null when killed by a signal). */
  readonly exited: Promise<number | null>;
  /** The first match of `pattern` in the output (its group 1 when it has one); rejects when it has not appeared within `timeoutMs` or the process ended. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** The exit status; rejects when the process has not ended within `timeoutMs`. */
  exitCode(timeoutMs?: number): Promise<number | null>;
  signal(sig: NodeJS.Signals): void;
}

const running = new Set<ChildProcess>();

/** Kills (SIGKILL) every daemon startUpnpd started that is still running: call it from afterEach, so a failing test leaves none behind. */
export function killStartedDaemons(): void {
  for (const child of running) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  running.clear();
}

/**
 * Starts `node bin/upnpd.js ARGS`. Needs dist/ (`npm run build`). Whatever happens, the process is
 * killed after `lifetimeMs`.
 */
export function startUpnpd(args: readonly string[], options: { cwd?: string; lifetimeMs?: number; env?: NodeJS.ProcessEnv } = {}): UpnpdRun {
  if (!existsSync(join(REPO, 'dist', 'app', 'cli.js'))) throw new Error('dist/ is missing: run `npm run build` (npm test does)');
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: options.cwd ?? REPO,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...(options.env ?? process.env), NO_COLOR: '1' },
  });
  running.add(child);
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const killer = setTimeout(() => child.kill('SIGKILL'), options.lifetimeMs ?? 20_000);
  void exited.then(() => clearTimeout(killer));
  return {
    output: () => output,
    records: () =>
      output
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .flatMap((line) => {
          try {
            return [JSON.parse(line) as Record<string, unknown>];
          } catch {
            return [];
          }
        }),
    exited,
    signal: (sig) => void child.kill(sig),
    async waitFor(pattern, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const match = pattern.exec(output);
        if (match) return match[1] ?? match[0];
        if (child.exitCode !== null || child.signalCode !== null) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      throw new Error(`no ${String(pattern)} in upnpd output:\n${output}`);
    },
    async exitCode(timeoutMs = 10_000) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`upnpd did not exit within ${timeoutMs} ms; output:\n${output}`)), timeoutMs);
      });
      try {
        return await Promise.race([exited, timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/**
 * Calls a WANIPConnection action of the daemon whose description is at `descriptionUrl`, with a
 * plain HTTP POST from loopback. Returns the HTTP status and the response body.
 */
export async function soapAction(
  descriptionUrl: string,
  action: string,
  args: Readonly<Record<string, string | number>> = {},
  timeoutMs = 5_000,
): Promise<{ status: number; body: string }> {
  const description = await (await fetch(descriptionUrl, { signal: AbortSignal.timeout(timeoutMs) })).text();
  const controlPath = /WANIPConnection:\d<\/serviceType>[\s\S]*?<controlURL>([^<]+)<\/controlURL>/.exec(description)?.[1];
  const serviceType = /urn:schemas-upnp-org:service:WANIPConnection:\d/.exec(description)?.[0];
  if (!controlPath || !serviceType) throw new Error(`no WANIPConnection service in the description at ${descriptionUrl}:\n${description}`);
  const body = Object.entries(args)
    .map(([name, value]) => `<${name}>${value}</${name}>`)
    .join('');
  const response = await fetch(new URL(controlPath, descriptionUrl), {
    method: 'POST',
    headers: { 'Content-Type': 'text/xml; charset="utf-8"', SOAPACTION: `"${serviceType}#${action}"` },
    body:
      '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">' +
      `<s:Body><u:${action} xmlns:u="${serviceType}">${body}</u:${action}></s:Body></s:Envelope>`,
    signal: AbortSignal.timeout(timeoutMs),
  });
  return { status: response.status, body: await response.text() };
}

/** A TCP port free on 127.0.0.1 a moment ago (for a listener the daemon opens, e.g. --admin-listen). */
export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}
