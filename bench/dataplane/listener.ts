// Accepts TCP connections on the given ports (the LAN client's end of the mapped ports) and
// closes them at once: `listener.ts --port P --port Q --lifetime-ms N`.
import { createServer, type Server } from 'node:net';
import { parseArgs } from 'node:util';
import { stopOnSignalOrAfter } from '../lifetime.js';

const { values } = parseArgs({ options: { port: { type: 'string', multiple: true }, 'lifetime-ms': { type: 'string' } } });
const ports = (values.port ?? []).map(Number);
if (ports.length === 0 || !values['lifetime-ms']) throw new Error('usage: listener.ts --port P [--port Q] --lifetime-ms N');

const servers: Server[] = [];
for (const port of ports) {
  const server = createServer((socket) => {
    socket.on('error', () => {}); // the prober resets its connections
    socket.destroy();
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '0.0.0.0', resolve));
  servers.push(server);
}
stopOnSignalOrAfter(Number(values['lifetime-ms']), () => {
  for (const server of servers) server.close();
});
console.log('LISTENING');
