// The load generator, run on a LAN client: `main.ts --client ADDR [--host ADDR …] --lifetime-ms N` (each --host: one more LAN host to spread the state-changing load over). Reads one
// CommandMessage per stdin line, runs them one at a time, writes one ResultMessage per stdout line.
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { stopOnSignalOrAfter } from '../lifetime.js';
import { NatPmpLoad } from './natpmp.js';
import type { CommandMessage, ResultMessage } from './protocol.js';
import { LoadSession } from './session.js';

const { values } = parseArgs({ options: { client: { type: 'string' }, host: { type: 'string', multiple: true }, 'lifetime-ms': { type: 'string' } } });
if (!values.client || !values['lifetime-ms']) throw new Error('usage: main.ts --client ADDR [--host ADDR …] --lifetime-ms N');

const session = new LoadSession(values.client, values.host ?? []);
const natPmp = new NatPmpLoad(values.host ?? []);
stopOnSignalOrAfter(Number(values['lifetime-ms']), () => {
  session.close();
  natPmp.close();
});

const reply = (message: ResultMessage) => process.stdout.write(`${JSON.stringify(message)}\n`);
let queue = Promise.resolve();
createInterface({ input: process.stdin })
  .on('line', (line) => {
    const { id, command } = JSON.parse(line) as CommandMessage;
    queue = queue.then(() =>
      (command.kind === 'natPmpCycles' || command.kind === 'natPmpMapMany' ? natPmp.run(command) : session.run(command)).then(
        (result) => void reply({ id, ok: true, result }),
        (err: unknown) => void reply({ id, ok: false, error: err instanceof Error ? err.message : String(err) }),
      ),
    );
  })
  // The harness closed our stdin: it is done with us (or gone).
  .on('close', () => void queue.then(() => process.exit(0)));
console.log('LOAD READY');
