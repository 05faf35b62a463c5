import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NamespaceProcess } from '../namespace-process.js';
import type { TestNamespace } from '../netns.js';

/** Where transmission-daemon answers RPC inside the LAN namespace (loopback of that namespace only). */
const RPC = { address: '127.0.0.1', port: 9091 } as const;
const STOP_GRACE_MS = 10_000;

/**
 * Transmission's daemon (transmission-daemon 3.00) in a LAN namespace with a config directory of its
 * own: port forwarding on, DHT, LPD and the blocklist off so that it sends nothing else, debug
 * logging to stderr. Port forwarding tries UPnP (miniupnpc) and NAT-PMP (libnatpmp) side by side;
 * `transmission-remote --no-portmap` switches it off at run time, which unmaps.
 */
export class TransmissionDaemon {
  private constructor(
    private readonly ns: TestNamespace,
    private readonly daemon: NamespaceProcess,
  ) {}

  static start(ns: TestNamespace, configDir: string, peerPort: number): TransmissionDaemon {
    mkdirSync(join(configDir, 'downloads'), { recursive: true });
    const settings = {
      'port-forwarding-enabled': true,
      'peer-port': peerPort,
      'peer-port-random-on-start': false,
      'dht-enabled': false,
      'lpd-enabled': false,
      'pex-enabled': false,
      'blocklist-enabled': false,
      'rpc-enabled': true,
      'rpc-bind-address': RPC.address,
      'rpc-port': RPC.port,
      'rpc-authentication-required': false,
      'rpc-whitelist-enabled': false,
      'rpc-host-whitelist-enabled': false,
      'download-dir': join(configDir, 'downloads'),
      'incomplete-dir-enabled': false,
      'message-level': 3,
    };
    writeFileSync(join(configDir, 'settings.json'), JSON.stringify(settings, null, 2));
    const daemon = NamespaceProcess.start(ns, ['transmission-daemon', '--foreground', '--config-dir', configDir, '--log-debug']);
    return new TransmissionDaemon(ns, daemon);
  }

  /** Resolves with the first line of its log matching `pattern`; rejects on timeout or exit, with the log. */
  async logLine(pattern: RegExp, timeoutMs: number): Promise<string> {
    const [line] = await this.daemon.waitFor(new RegExp(`^.*${pattern.source}.*$`, `m${pattern.flags.replace('m', '')}`), timeoutMs);
    return line;
  }

  /** Everything it logged so far. */
  log(): string {
    return this.daemon.output();
  }

  /** Switches port forwarding off over RPC, as a user unticking "Use port forwarding" does. */
  async disablePortForwarding(): Promise<string> {
    return this.ns.exec('transmission-remote', [`${RPC.address}:${RPC.port}`, '--no-portmap']);
  }

  stop(): Promise<number> {
    return this.daemon.stop('SIGTERM', STOP_GRACE_MS);
  }
}
