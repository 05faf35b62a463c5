// The benchmark's STUN server, run on the WAN host: `main.ts --address A --address B --port P --port Q --lifetime-ms N`.
import { parseArgs } from 'node:util';
import { stopOnSignalOrAfter } from '../lifetime.js';
import { startStunServer } from './server.js';

const { values } = parseArgs({
  options: {
    address: { type: 'string', multiple: true },
    port: { type: 'string', multiple: true },
    'lifetime-ms': { type: 'string' },
  },
});
const [address1, address2] = values.address ?? [];
const [port1, port2] = (values.port ?? []).map(Number);
if (!address1 || !address2 || port1 === undefined || port2 === undefined || !values['lifetime-ms']) {
  throw new Error('usage: main.ts --address A --address B --port P --port Q --lifetime-ms N');
}

const server = await startStunServer({ addresses: [address1, address2], ports: [port1, port2] });
stopOnSignalOrAfter(Number(values['lifetime-ms']), () => server.close());
console.log(`STUN READY ${server.primary.address}:${server.primary.port}`);
