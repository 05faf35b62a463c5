import 'reflect-metadata';
import { afterAll, beforeAll, beforeEach } from 'vitest';
import { createSocket } from 'node:dgram';
import { XMLParser } from 'fast-xml-parser';
import { connect } from 'node:net';
import { container as rootContainer } from 'tsyringe';
import { configSchema, type ResolvedConfig, type UserConfig } from '../../core/config/schema.js';
import { silentLogger } from '../../core/logger.js';
import type { LeasePolicy } from '../../core/mapping/service.js';
import type { ExternalAddressChangeEvent, Plugin } from '../../core/plugins/types.js';
import type { InterfaceAddress, LinkState, NetworkInfo, WanCounters } from '../../core/net/network-info.js';
import { CLOCK, LOGGER, REFUSALS } from '../../core/plugins/tokens.js';
import { RefusalRegistry, RefusalReporter } from '../../core/plugins/refusals.js';
import { systemClock } from '../../core/clock.js';
import { UpnpIgdFrontEnd, type HttpLimits } from '../../core/upnp/index.js';
import { LanTargetPolicy } from '../../plugins/lan-target/index.js';
import { SecureModePolicy } from '../../plugins/secure-mode/index.js';
import { type RecordingBackend, makeMappings } from '../support/fakes.js';
import type { Ipv6Lan } from '../../core/net/ipv6.js';

/**
 * The external address the tests report: TEST-NET-3 (RFC 5737), never routed, so nothing can
 * reach a real host through it. miniupnpc treats reserved ranges such as this one as a "not
 * connected" IGD when it picks a gateway by discovery, but carries on with every command; with
 * `-u URL` (how these tests run upnpc) version 2.2.4 does not even check. A public address would
 * look more real to clients but could belong to someone.
 */
export const TEST_EXTERNAL_IP = '203.0.113.7';

/** The dry-run LAN: loopback, on which the front-end listens and from which the tests connect. */
export const LOOPBACK_LAN: InterfaceAddress = { interface: 'lo', address: '127.0.0.1', prefixLength: 8 };

export const WAN_INTERFACE = 'wan0';

/** bytesReceived is past 2^32, to show the ui4 wrap-around. */
const DEFAULT_COUNTERS: WanCounters = { bytesSent: 1234, bytesReceived: 2 ** 32 + 5, packetsSent: 12, packetsReceived: 34 };

/** A NetworkInfo describing a gateway with one WAN interface whose address and counters the test sets. */
export class FakeNetwork implements NetworkInfo {
  wanAddresses: string[] = [];
  wanCounters: WanCounters | null = { ...DEFAULT_COUNTERS };
  wanLink: LinkState | null = { up: true, speedBitsPerSecond: 1_000_000_000 };

  ipv4Addresses(iface: string): InterfaceAddress[] {
    return iface === WAN_INTERFACE ? this.wanAddresses.map((address) => ({ interface: iface, address, prefixLength: 24 })) : [];
  }

  counters(iface: string): Promise<WanCounters | null> {
    return Promise.resolve(iface === WAN_INTERFACE ? this.wanCounters : null);
  }

  link(iface: string): Promise<LinkState | null> {
    return Promise.resolve(iface === WAN_INTERFACE ? this.wanLink : null);
  }

  private addressListeners = new Set<() => void>();

  watchAddresses(onChange: () => void): () => void {
    this.addressListeners.add(onChange);
    return () => this.addressListeners.delete(onChange);
  }

  /** Gives the WAN interface new addresses and reports it as the kernel's address event would (no poll needed). */
  renumberWan(addresses: string[]): void {
    this.wanAddresses = addresses;
    for (const listener of this.addressListeners) listener();
  }
}

/**
 * The protocol tests send hundreds of state-changing requests from 127.0.0.1 in quick succession,
 * far beyond what one real client does; they run with the rate limit raised out of the way. The
 * bounds tests (client-bounds.test.ts) pass `config.limits` to run with the defaults.
 */
const UNTHROTTLED = { stateChanges: { burst: 100_000, perSecond: 100_000 }, mSearch: { burst: 100_000, perSecond: 100_000 } };

export interface IgdFixtureOptions {
  readonly config?: UserConfig;
  readonly lan?: readonly InterfaceAddress[];
  /** The LAN IPv6 addresses served as well (none by default). */
  readonly lanIpv6?: Ipv6Lan;
  /** The HTTP port to try first (as after a LAN change). */
  readonly preferredHttpPort?: number;
  readonly secureMode?: boolean;
  readonly lease?: LeasePolicy;
  readonly httpLimits?: Partial<HttpLimits>;
  readonly network?: FakeNetwork;
  /** Policy plugins run after secure mode. */
  readonly plugins?: readonly Plugin[];
  /** The in-memory backend (default: one with IPv6 pinholes). */
  readonly backend?: RecordingBackend;
}

export type IgdFixture = Awaited<ReturnType<typeof startIgd>>;

/**
 * One front-end shared by the tests of a describe block: started before them, back to an empty
 * table before each (`reset`), closed after them. `use` receives the started fixture.
 */
export function useSharedIgd(use: (fixture: IgdFixture) => void, options: IgdFixtureOptions = {}): void {
  let fixture: IgdFixture | undefined;
  beforeAll(async () => {
    fixture = await startIgd(options);
    use(fixture);
  });
  beforeEach(async () => {
    await fixture!.reset();
  });
  afterAll(async () => {
    await fixture?.close();
  });
}

/**
 * Starts the IGD front-end on 127.0.0.1, port 0, over a MappingService with an in-memory backend
 * and (unless turned off) secure mode. SSDP runs on a free port of its own, never on 1900.
 */
export async function startIgd(options: IgdFixtureOptions = {}) {
  const lan = options.lan ?? [LOOPBACK_LAN];
  const network = options.network ?? new FakeNetwork();
  const config: ResolvedConfig = {
    ...configSchema.parse({ externalIp: TEST_EXTERNAL_IP, wan: WAN_INTERFACE, dryRun: true, limits: UNTHROTTLED, ...options.config }),
    source: 'test',
    lanFromCommandLine: false,
    plugins: [],
  };
  const policies = [...defaultPoliciesFor(lan, options.secureMode !== false), ...(options.plugins ?? [])];
  const { mappings, backend, clock } = makeMappings({ plugins: policies, lease: options.lease, backend: options.backend });
  const ssdpPort = await freeUdpPort();
  const externalAddressChanges: ExternalAddressChangeEvent[] = [];
  const frontEnd = new UpnpIgdFrontEnd({
    config,
    logger: silentLogger,
    mappings,
    network,
    clock,
    lan,
    lanIpv6: options.lanIpv6,
    preferredHttpPort: options.preferredHttpPort,
    ssdpPort,
    httpLimits: options.httpLimits,
    onExternalAddressChange: (event) => externalAddressChanges.push(event),
  });
  await frontEnd.start();
  const url = new URL(frontEnd.describe()[0]!);
  const port = Number(url.port);
  return {
    frontEnd,
    mappings,
    backend,
    clock,
    network,
    config,
    port,
    ssdpPort,
    host: `127.0.0.1:${port}`,
    descriptionUrl: url.href,
    /** What the front-end reported through onExternalAddressChange (the daemon runs the plugins' hook with it). */
    externalAddressChanges,
    /** Back to an empty table and a healthy backend and WAN, for the next test on a shared fixture. */
    async reset() {
      await mappings.removeAll();
      backend.failNext = 0;
      backend.applied.length = 0;
      backend.pinholePackets.clear();
      network.wanAddresses = [];
      network.wanCounters = { ...DEFAULT_COUNTERS };
    },
    async close() {
      await frontEnd.stop();
      await mappings.close();
    },
  };
}

/** The policies the daemon adds by default that decide who may map to whom: lan-target, and secure mode when on. */
export function defaultPoliciesFor(lan: readonly InterfaceAddress[], secure: boolean): Plugin[] {
  return [lanTargetFor(lan), ...(secure ? [secureModePolicy()] : [])];
}

export function secureModePolicy(): SecureModePolicy {
  const child = rootContainer.createChildContainer();
  child.register(REFUSALS, { useValue: new RefusalRegistry() });
  child.register(LOGGER, { useValue: silentLogger });
  child.register(CLOCK, { useValue: systemClock });
  return child.resolve(SecureModePolicy);
}

export function lanTargetFor(lan: readonly InterfaceAddress[]): LanTargetPolicy {
  return new LanTargetPolicy(lan, new RefusalReporter('lan-target', new RefusalRegistry(), silentLogger, systemClock));
}

async function freeUdpPort(): Promise<number> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

// ---------------------------------------------------------------------------------------------
// A raw HTTP client: the tests need exact control over the bytes (HTTP/1.0, header case, Expect).
// ---------------------------------------------------------------------------------------------

export interface RawResponse {
  readonly statusLine: string;
  readonly status: number;
  /** Header names in lower case. */
  readonly headers: Readonly<Record<string, string>>;
  /** The header lines as received (a repeated header is in `headers` once, here as often as sent). */
  readonly headerLines: readonly string[];
  readonly body: string;
  /** Interim 100 Continue responses seen before the final one. */
  readonly continues: number;
}

export interface RawRequestOptions {
  /** Address to connect to (default 127.0.0.1). */
  readonly address?: string;
  /** Source address to connect from (any 127.x address works on loopback). */
  readonly localAddress?: string;
  readonly timeoutMs?: number;
  /** Sends the body only after a 100 Continue (for Expect tests). */
  readonly waitForContinue?: boolean;
  /** The response to a HEAD request: it has a Content-Length but no body. */
  readonly headResponse?: boolean;
}

/** Sends `head` (request line and headers, without the blank line) and `body`; reads one response. */
export function rawRequest(port: number, head: string, body = '', options: RawRequestOptions = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: options.address ?? '127.0.0.1', port, localAddress: options.localAddress });
    let received = Buffer.alloc(0);
    let continues = 0;
    let bodySent = false;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete response within ${options.timeoutMs ?? 5000} ms: ${received.toString('latin1').slice(0, 200)}`));
    }, options.timeoutMs ?? 5000);
    const finish = (result: RawResponse | Error) => {
      clearTimeout(timer);
      socket.destroy();
      if (result instanceof Error) reject(result);
      else resolve(result);
    };
    const sendBody = () => {
      if (bodySent) return;
      bodySent = true;
      socket.write(body);
    };
    const tryParse = (closed: boolean) => {
      for (;;) {
        const text = received.toString('latin1');
        const end = text.indexOf('\r\n\r\n');
        if (end < 0) return closed ? finish(new Error(`connection closed mid-headers: ${text.slice(0, 200)}`)) : undefined;
        const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
        const status = Number(statusLine!.split(' ')[1]);
        if (status === 100) {
          continues++;
          received = received.subarray(end + 4);
          sendBody();
          continue;
        }
        const headers: Record<string, string> = {};
        for (const line of lines) {
          const colon = line.indexOf(':');
          headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
        }
        const bodyBytes = received.subarray(end + 4);
        const length = options.headResponse ? 0 : headers['content-length'] === undefined ? undefined : Number(headers['content-length']);
        if (length === undefined ? !closed : bodyBytes.length < length) return closed ? finish(new Error('connection closed mid-body')) : undefined;
        return finish({ statusLine: statusLine!, status, headers, headerLines: lines, body: bodyBytes.subarray(0, length).toString('utf8'), continues });
      }
    };
    socket.on('data', (chunk) => {
      received = Buffer.concat([received, chunk]);
      tryParse(false);
    });
    socket.on('end', () => tryParse(true));
    socket.on('error', (err) => finish(err));
    socket.on('connect', () => {
      socket.write(`${head}\r\n\r\n`);
      if (!options.waitForContinue) sendBody();
    });
  });
}

// ---------------------------------------------------------------------------------------------
// SOAP
// ---------------------------------------------------------------------------------------------

export const WANIP = 'urn:schemas-upnp-org:service:WANIPConnection';
export const WANCOMMON = 'urn:schemas-upnp-org:service:WANCommonInterfaceConfig';
export const L3F = 'urn:schemas-upnp-org:service:Layer3Forwarding';
export const WANIP6FC = 'urn:schemas-upnp-org:service:WANIPv6FirewallControl';

/** Control paths by service type prefix and view version (as the descriptions list them). */
export function controlPath(typePrefix: string, view: 1 | 2): string {
  const name = { [WANIP]: 'WANIPConn', [WANCOMMON]: 'WANCommonIFC', [L3F]: 'L3F', [WANIP6FC]: 'WANIP6FC' }[typePrefix];
  return `/igd${view}/${name}/control`;
}

export function envelope(serviceType: string, action: string, argsXml: string): string {
  return (
    '<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" ' +
    's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>' +
    `<u:${action} xmlns:u="${serviceType}">${argsXml}</u:${action}></s:Body></s:Envelope>\r\n`
  );
}

export function argsXml(args: Readonly<Record<string, string | number>>): string {
  const escape = (v: string) => v.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  return Object.entries(args)
    .map(([name, value]) => `<${name}>${escape(String(value))}</${name}>`)
    .join('');
}

export interface SoapCallOptions {
  /** Service version named in SOAPACTION and the body (default: the view's). */
  readonly version?: 1 | 2;
  /** Which view's control URL to post to (default 2). */
  readonly view?: 1 | 2;
  readonly typePrefix?: string;
  /** Replaces the whole SOAPACTION header line; null leaves it out. */
  readonly soapActionHeader?: string | null;
  readonly extraHeaders?: readonly string[];
  readonly localAddress?: string;
  readonly http10?: boolean;
  /** The argument elements as raw XML, instead of `args`. */
  readonly rawArgs?: string;
}

export interface SoapResult extends RawResponse {
  /** Output arguments of a successful response (values decoded). */
  readonly values: Readonly<Record<string, string>>;
  /** The UPnP error code of a fault. */
  readonly errorCode: number | undefined;
}

export async function soap(
  fixture: { port: number },
  action: string,
  args: Readonly<Record<string, string | number>> = {},
  options: SoapCallOptions = {},
): Promise<SoapResult> {
  const view = options.view ?? 2;
  const typePrefix = options.typePrefix ?? WANIP;
  const version = options.version ?? (typePrefix === WANIP ? view : 1);
  const serviceType = `${typePrefix}:${version}`;
  const body = envelope(serviceType, action, options.rawArgs ?? argsXml(args));
  const soapAction = options.soapActionHeader === undefined ? `SOAPAction: "${serviceType}#${action}"` : options.soapActionHeader;
  const head = [
    `POST ${controlPath(typePrefix, view)} HTTP/${options.http10 ? '1.0' : '1.1'}`,
    `Host: 127.0.0.1:${fixture.port}`,
    'Content-Type: text/xml; charset="utf-8"',
    `Content-Length: ${Buffer.byteLength(body)}`,
    ...(soapAction === null ? [] : [soapAction]),
    ...(options.extraHeaders ?? []),
  ].join('\r\n');
  const response = await rawRequest(fixture.port, head, body, { localAddress: options.localAddress });
  return { ...response, values: responseValues(response.body), errorCode: errorCodeOf(response.body) };
}

const responseParser = new XMLParser({ parseTagValue: false, removeNSPrefix: true, ignoreAttributes: true, trimValues: false });

/** The output arguments of a successful response (entities and CDATA decoded by a standard parser). */
function responseValues(body: string): Record<string, string> {
  if (!body.startsWith('<?xml')) return {};
  const parsed = responseParser.parse(body) as { Envelope?: { Body?: Record<string, Record<string, string> | ''> } } | undefined;
  const soapBody = parsed?.Envelope?.Body ?? {};
  const [name] = Object.keys(soapBody);
  if (!name?.endsWith('Response')) return {};
  const values = soapBody[name];
  return values === '' ? {} : values!;
}

function errorCodeOf(body: string): number | undefined {
  const code = /<errorCode>(\d+)<\/errorCode>/.exec(body)?.[1];
  return code === undefined ? undefined : Number(code);
}

/** AddPortMapping arguments, for 127.0.0.1 unless overridden. */
export function addArgs(overrides: Readonly<Record<string, string | number>> = {}): Record<string, string | number> {
  return {
    NewRemoteHost: '',
    NewExternalPort: 5000,
    NewProtocol: 'TCP',
    NewInternalPort: 5000,
    NewInternalClient: '127.0.0.1',
    NewEnabled: 1,
    NewPortMappingDescription: 'test',
    NewLeaseDuration: 3600,
    ...overrides,
  };
}
