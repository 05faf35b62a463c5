// Measures TCP connect latency to HOST on each port, alternating between the ports so that drift
// hits them alike: `probe.ts --host H --port P --port Q --samples N --warmup W`. Prints one JSON
// line: { "<port>": [microseconds, ...], ... }.
import { connect } from 'node:net';
import { parseArgs } from 'node:util';

const CONNECT_TIMEOUT_MS = 2_000;

const { values } = parseArgs({
  options: { host: { type: 'string' }, port: { type: 'string', multiple: true }, samples: { type: 'string' }, warmup: { type: 'string' } },
});
const host = values.host;
const ports = (values.port ?? []).map(Number);
if (!host || ports.length === 0 || !values.samples || !values.warmup) throw new Error('usage: probe.ts --host H --port P [--port Q] --samples N --warmup W');

/** Microseconds from connect() to the connection being established. */
function connectOnce(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const socket = connect({ host: host!, port });
    socket.setTimeout(CONNECT_TIMEOUT_MS, () => socket.destroy(new Error(`${host}:${port}: no connection within ${CONNECT_TIMEOUT_MS} ms`)));
    socket.once('connect', () => {
      const micros = Number(process.hrtime.bigint() - start) / 1000;
      // A reset leaves no TIME_WAIT behind, however many samples are taken.
      socket.resetAndDestroy();
      resolve(micros);
    });
    socket.once('error', reject);
  });
}

const samples: Record<number, number[]> = Object.fromEntries(ports.map((port) => [port, []]));
for (let round = 0; round < Number(values.warmup) + Number(values.samples); round += 1) {
  for (const port of ports) {
    const micros = await connectOnce(port);
    if (round >= Number(values.warmup)) samples[port]!.push(micros);
  }
}
console.log(JSON.stringify(samples));
