import { readFile } from 'node:fs/promises';
import type { ResolvedConfig } from '../../core/config/schema.js';
import { messageOf } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { InterfaceAddress, NetworkInfo } from '../../core/net/network-info.js';
import type { FirewallBackend, Finding } from '../../core/plugins/types.js';
import { udnsForLan } from '../../core/upnp/index.js';
import {
  IP_FORWARD_SYSCTL,
  IPV6_FORWARD_SYSCTL,
  ipForwardingFinding,
  ipv6ForwardingFinding,
  lanAddressFindings,
  otherIgdFinding,
  portFindings,
  probeIgds,
  readBoundPorts,
  wanAddressFinding,
  type BoundPort,
  type IgdAnswer,
} from './host.js';

export type { Finding };

/** What the checks read from the host; tests give their own. */
export interface HostReaders {
  readonly ipForward: () => Promise<string | undefined>;
  readonly ipv6Forward: () => Promise<string | undefined>;
  readonly boundPorts: () => Promise<BoundPort[]>;
  readonly probeIgds: (lan: readonly InterfaceAddress[]) => Promise<IgdAnswer[]>;
}

export const OS_READERS: HostReaders = {
  ipForward: () => readFile(IP_FORWARD_SYSCTL, 'utf8').catch(() => undefined),
  ipv6Forward: () => readFile(IPV6_FORWARD_SYSCTL, 'utf8').catch(() => undefined),
  boundPorts: readBoundPorts,
  probeIgds: (lan) => probeIgds(lan),
};

/** The checks that must look before upnpd binds its ports and answers SSDP itself. */
export async function preStartFindings(config: ResolvedConfig, lan: readonly InterfaceAddress[], readers: HostReaders): Promise<Finding[]> {
  const ports = portFindings(await readers.boundPorts(), lan, config.httpPort);
  // In dry-run on loopback, another SSDP service on the laptop is none of upnpd's business.
  return config.dryRun && !config.lanFromCommandLine ? ports.filter((f) => f.check !== 'ssdp-port') : ports;
}

/** The other IGDs on the LAN: one query per LAN address (not in dry-run on loopback). */
export async function otherIgdFindings(config: ResolvedConfig, lan: readonly InterfaceAddress[], readers: HostReaders): Promise<Finding[]> {
  if (config.dryRun && !config.lanFromCommandLine) return [];
  const own = udnsForLan(lan);
  return [otherIgdFinding(await readers.probeIgds(lan), [own.gateway, own.wan, own.wanConnection])];
}

/** Forwarding, addresses, and what the firewall backend sees of the forward path. */
export async function hostFindings(
  config: ResolvedConfig,
  network: NetworkInfo,
  readers: HostReaders,
  backend: FirewallBackend | undefined,
): Promise<Finding[]> {
  const findings: Finding[] = [];
  if (!config.dryRun) findings.push(ipForwardingFinding(await readers.ipForward()));
  // Only where pinholes are opened: an IPv4-only gateway need not forward IPv6.
  if (!config.dryRun && config.ipv6 && backend?.pinholes) findings.push(ipv6ForwardingFinding(await readers.ipv6Forward()));
  const external = config.externalIp ?? (config.wan ? network.ipv4Addresses(config.wan)[0]?.address : undefined);
  const where = config.externalIp ? 'externalIp' : config.wan ? `the address of ${config.wan}` : 'neither wan nor externalIp is set';
  findings.push(wanAddressFinding(external, where, config.dryRun));
  if (!(config.dryRun && !config.lanFromCommandLine)) findings.push(...lanAddressFindings(config, network));
  if (backend?.diagnose) {
    try {
      findings.push(...(await backend.diagnose()));
    } catch (err) {
      findings.push({ check: 'forward-path', severity: 'warning', message: `the firewall backend could not check the forward path: ${messageOf(err)}` });
    }
  }
  return findings;
}

/** One warning per finding that is not ok: what is wrong, what it breaks, the exact fix. */
export function logFindings(logger: Logger, findings: readonly Finding[]): void {
  for (const finding of findings) {
    if (finding.severity === 'ok') continue;
    logger.warn(
      { check: finding.check, severity: finding.severity, fix: finding.fix },
      `check ${finding.check}: ${finding.message}${finding.fix ? `. Fix: ${finding.fix}` : ''} (upnpd doctor lists every check)`,
    );
  }
}
