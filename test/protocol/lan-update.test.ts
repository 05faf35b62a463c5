import 'reflect-metadata';
import { createSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { startDaemon } from '../../app/compose.js';
import { configSchema, type ResolvedConfig } from '../../core/config/schema.js';
import { createRootLogger } from '../../core/logging.js';
import type { InterfaceAddress } from '../../core/net/network-info.js';
import { defineBackend, definePlugin } from '../../core/plugins/define.js';
import type { LanAddressChangeEvent } from '../../core/plugins/types.js';
import { natPmp } from '../../plugins/nat-pmp/index.js';
import { RecordingBackend, RecordingLogger } from '../support/fakes.js';
import { LoopbackNetwork } from '../support/loopback-network.js';

// A LAN address added while the daemon runs (an IPv6 address whose duplicate address detection
// ended, an admin's `ip addr add`) and removed again, on loopback: 127.0.0.2 is the address that
// comes and goes (every 127/8 address is the host's own). The front-ends take it in place: the
// connection a client holds to 127.0.0.1 keeps being answered across both changes (a restart
// would close it), and the new address is served until it goes.

const FIRST: InterfaceAddress = { interface: 'lo', address: '127.0.0.1', prefixLength: 8 };
const ADDED: InterfaceAddress = { interface: 'lo', address: '127.0.0.2', prefixLength: 8 };

function config(): ResolvedConfig {
  const memory = defineBackend({ name: 'memory', create: () => new RecordingBackend() });
  return {
    ...configSchema.parse({ lan: ['lo'], externalIp: '203.0.113.1', ipv6: false }),
    source: 'test',
    lanFromCommandLine: true,
    // Port 0: no clash with another NAT-PMP server on this host.
    plugins: [memory(), natPmp({ port: 0, announce: false })],
  };
}

/** One keep-alive HTTP connection; `get` sends a request on it and resolves with the status line. */
async function keepAlive(host: string, port: number): Promise<{ get(path: string): Promise<string>; socket: Socket }> {
  const socket = connect({ host, port });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let closed = false;
  socket.once('close', () => (closed = true));
  const get = (path: string) =>
    new Promise<string>((resolve, reject) => {
      if (closed) return reject(new Error('connection closed'));
      let text = '';
      const onData = (chunk: Buffer) => {
        text += chunk.toString('latin1');
        const head = text.indexOf('\r\n\r\n');
        const length = /content-length: *(\d+)/i.exec(text)?.[1];
        if (head >= 0 && length !== undefined && text.length >= head + 4 + Number(length)) {
          socket.off('data', onData).off('close', onClose);
          resolve(text.slice(0, text.indexOf('\r\n')));
        }
      };
      const onClose = () => reject(new Error('connection closed'));
      socket.on('data', onData).once('close', onClose);
      socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nConnection: keep-alive\r\n\r\n`);
    });
  return { get, socket };
}

/** A NAT-PMP external address request (RFC 6886 §3.2) to `address:port`; the result code of the answer, or undefined. */
async function natPmpResult(address: string, port: number): Promise<number | undefined> {
  const socket = createSocket('udp4');
  socket.on('error', () => undefined);
  const answer = new Promise<Buffer>((resolve) => socket.once('message', resolve));
  socket.send(Buffer.from([0, 0]), port, address);
  const reply = await Promise.race([answer, sleep(1_000).then(() => undefined)]);
  socket.close();
  return reply?.readUInt16BE(2);
}

/**
 * A NAT-PMP request to map TCP `port` (RFC 6886 §3.3), sent from `from` to `address:pmpPort`; the
 * result code of the answer, or undefined.
 */
async function natPmpMapResult(from: string, address: string, pmpPort: number, port: number): Promise<number | undefined> {
  const socket = createSocket('udp4');
  socket.on('error', () => undefined);
  await new Promise<void>((resolve) => socket.bind(0, from, resolve));
  const answer = new Promise<Buffer>((resolve) => socket.once('message', resolve));
  const request = Buffer.alloc(12);
  request.writeUInt8(2, 1);
  request.writeUInt16BE(port, 4);
  request.writeUInt16BE(port, 6);
  request.writeUInt32BE(600, 8);
  socket.send(request, pmpPort, address);
  const reply = await Promise.race([answer, sleep(1_000).then(() => undefined)]);
  socket.close();
  return reply?.readUInt16BE(2);
}

function portsOf(urls: readonly string[]): Map<string, number> {
  return new Map(urls.map((url) => [new URL(url).hostname, Number(new URL(url).port)]));
}

describe('a LAN address added and removed while running', () => {
  it('is served in place: existing connections and sockets keep answering, the new address is served until it goes', async () => {
    const network = new LoopbackNetwork([FIRST]);
    const { output } = createRootLogger({ level: 'silent' });
    const logger = new RecordingLogger();
    const daemon = await startDaemon(config(), { logger, logOutput: output, network });
    try {
      const [upnp, pmp] = daemon.frontEnds;
      const httpPort = portsOf(upnp!.describe!()).get('127.0.0.1')!;
      const pmpPort = portsOf(pmp!.describe!()).get('127.0.0.1')!;
      const client = await keepAlive('127.0.0.1', httpPort);
      expect(await client.get('/rootDesc.xml')).toBe('HTTP/1.1 200 OK');

      // Requests on the held connection all through the change (paced, bounded in count and so in time).
      const answers: string[] = [];
      let changing = true;
      const loop = (async () => {
        for (let i = 0; i < 3_000 && changing; i++) {
          answers.push(await client.get('/rootDesc.xml').catch((err: Error) => err.message));
          await sleep(5);
        }
      })();
      network.change([FIRST, ADDED]);
      const served = () => daemon.frontEnds.map((f) => portsOf(f.describe!()).has('127.0.0.2'));
      await expect.poll(served, { timeout: 10_000 }).toEqual([true, true]);
      const answeredBefore = answers.length;
      await sleep(200);
      changing = false;
      await loop;
      // Some before the change was served, some after, every one answered.
      expect(answeredBefore).toBeGreaterThan(0);
      expect(answers.length).toBeGreaterThan(answeredBefore);
      expect(new Set(answers)).toEqual(new Set(['HTTP/1.1 200 OK']));

      // The same front-ends, the same ports; the new address served by both.
      expect(logger.lines.filter((l) => l.level === 'error')).toEqual([]);
      expect(daemon.frontEnds[0]).toBe(upnp);
      expect(daemon.frontEnds[1]).toBe(pmp);
      expect(portsOf(upnp!.describe!())).toEqual(
        new Map([
          ['127.0.0.1', httpPort],
          ['127.0.0.2', httpPort],
        ]),
      );
      const added = await keepAlive('127.0.0.2', httpPort);
      expect(await added.get('/rootDesc.xml')).toBe('HTTP/1.1 200 OK');
      added.socket.destroy();
      expect(portsOf(pmp!.describe!()).get('127.0.0.1')).toBe(pmpPort);
      const addedPmpPort = portsOf(pmp!.describe!()).get('127.0.0.2')!;
      expect(await natPmpResult('127.0.0.2', addedPmpPort)).toBe(0);
      expect(await natPmpResult('127.0.0.1', pmpPort)).toBe(0);

      // Removed again: no longer served, and the held connection still answered.
      network.change([FIRST]);
      await expect.poll(served, { timeout: 5_000 }).toEqual([false, false]);
      await expect(keepAlive('127.0.0.2', httpPort)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
      expect(await natPmpResult('127.0.0.2', addedPmpPort)).toBeUndefined();
      expect(await client.get('/rootDesc.xml')).toBe('HTTP/1.1 200 OK');
      expect(await natPmpResult('127.0.0.1', pmpPort)).toBe(0);
      client.socket.destroy();
    } finally {
      await daemon.stop();
    }
  });
});

describe('a LAN address of a new subnet', () => {
  it('is a LAN host to the policies once served: a host there maps for itself, and plugins hear of the change first', async () => {
    // Each address its own /32: 127.0.0.2 is outside the LAN of the start, as a renumbered subnet is.
    const only = (address: string): InterfaceAddress => ({ interface: 'lo', address, prefixLength: 32 });
    const network = new LoopbackNetwork([only('127.0.0.1')]);
    const heard: LanAddressChangeEvent[] = [];
    const lanWatcher = definePlugin({
      name: 'lan-watcher',
      create: () => ({ name: 'lan-watcher', hooks: { onLanAddressChange: (event: LanAddressChangeEvent) => void heard.push(event) } }),
    });
    const base = config();
    const { output } = createRootLogger({ level: 'silent' });
    const daemon = await startDaemon({ ...base, plugins: [...base.plugins, lanWatcher()] }, { logger: new RecordingLogger(), logOutput: output, network });
    try {
      const pmp = daemon.frontEnds[1]!;
      network.change([only('127.0.0.1'), only('127.0.0.2')]);
      await expect.poll(() => portsOf(pmp.describe!()).has('127.0.0.2'), { timeout: 10_000 }).toBe(true);
      expect(heard).toEqual([{ previous: [only('127.0.0.1')], current: [only('127.0.0.1'), only('127.0.0.2')] }]);
      // Secure mode (on by default) maps only for LAN hosts: 127.0.0.2 is one now.
      const pmpPort = portsOf(pmp.describe!()).get('127.0.0.2')!;
      expect(await natPmpMapResult('127.0.0.2', '127.0.0.2', pmpPort, 7820)).toBe(0);
      expect(daemon.mappings.get({ remoteHost: '', externalPort: 7820, protocol: 'TCP' })?.internalClient).toBe('127.0.0.2');
    } finally {
      await daemon.stop();
    }
  });
});
