// libp2p's NAT-PMP client (@achingbrain/nat-port-mapper) as a LAN application uses it, run in the
// LAN client's namespace: `nat-port-mapper-client.ts GATEWAY INTERNAL_HOST PORT LIFETIME_MS`.
// Learns the external address, maps PORT for TCP and for UDP, and prints one JSON line per step.
// On stdin, `unmap` deletes both mappings (one unmap call per protocol) and `stop` calls the
// library's stop(). It exits after LIFETIME_MS in any case.
import { createInterface } from 'node:readline';
import { pmpNat } from '@achingbrain/nat-port-mapper';

const [gatewayAddress, internalHost, portText, lifetimeText] = process.argv.slice(2);
if (!gatewayAddress || !internalHost || !portText || !lifetimeText) throw new Error('usage: nat-port-mapper-client.ts GATEWAY INTERNAL_HOST PORT LIFETIME_MS');
const port = Number(portText);
/** The library sends no retransmission: a lost datagram would hang a call for ever. */
const CALL_TIMEOUT_MS = 10_000;

const say = (event: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(event)}\n`);
setTimeout(() => process.exit(3), Number(lifetimeText)).unref();

const gateway = pmpNat(gatewayAddress);
const signal = () => AbortSignal.timeout(CALL_TIMEOUT_MS);
try {
  say({ event: 'external', address: await gateway.externalIp({ signal: signal() }) });
  for (const protocol of ['TCP', 'UDP'] as const) {
    // The library's defaults, as libp2p uses them (ttl 3,600,000 "ms", auto-refresh on).
    const mapping = await gateway.map(port, internalHost, { protocol, signal: signal() });
    say({ event: 'mapped', ...mapping });
  }
} catch (err) {
  say({ event: 'error', message: (err as Error).message });
  process.exit(1);
}

createInterface({ input: process.stdin }).on('line', (line) => {
  void (async () => {
    try {
      if (line === 'unmap') {
        for (const protocol of ['TCP', 'UDP'] as const) {
          // unmap() is typed with AbortOptions only, yet reads `protocol` (default TCP): through its
          // typed API a UDP mapping cannot be deleted. The option is passed as libp2p would have to.
          const options = { protocol, signal: signal() } as Parameters<typeof gateway.unmap>[1];
          await gateway.unmap(port, options);
          say({ event: 'unmapped', protocol });
        }
      } else if (line === 'stop') {
        await gateway.stop({ signal: signal() });
        say({ event: 'stopped' });
      }
    } catch (err) {
      say({ event: 'error', message: (err as Error).message });
    }
  })();
});
