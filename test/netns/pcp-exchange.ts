import { EXCHANGE_SCRIPT } from '../support/pcp-client.js';
import { NamespaceProcess } from './namespace-process.js';
import type { TestNamespace } from './netns.js';

/** How long a NAT-PMP/PCP request waits for its answer. */
export const ANSWER_MS = 2_000;
export const NAT_PMP_PORT = 5351;

/**
 * Sends one datagram from `ns` (optionally from `localAddress`) to UDP 5351 of `host` (IPv4, or
 * IPv6 with a zone for link-local) and resolves with the answer, if any came.
 */
export async function exchangeIn(ns: TestNamespace, host: string, packet: Buffer, localAddress = ''): Promise<Buffer | undefined> {
  const run = NamespaceProcess.start(ns, [
    process.execPath,
    '-e',
    EXCHANGE_SCRIPT,
    host,
    String(NAT_PMP_PORT),
    packet.toString('hex'),
    localAddress,
    String(ANSWER_MS),
  ]);
  try {
    const [, hex] = await run.waitFor(/^(?:ANSWER ([0-9a-f]*)|NO ANSWER)$/m, ANSWER_MS + 10_000);
    return hex === undefined ? undefined : Buffer.from(hex, 'hex');
  } finally {
    await run.kill();
  }
}
