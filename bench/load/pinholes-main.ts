// The pinhole load, run in the LAN client's namespace: `pinholes-main.ts --description URL … --host ADDR … --count N
// --first-port P --lease S --concurrency C --max-ms M`. Prints one line `PINHOLES <json PinholeLoadResult>` and exits.
import { parseArgs } from 'node:util';
import { addPinholes } from './pinholes.js';

const { values } = parseArgs({
  options: {
    description: { type: 'string', multiple: true },
    host: { type: 'string', multiple: true },
    count: { type: 'string' },
    'first-port': { type: 'string' },
    lease: { type: 'string' },
    concurrency: { type: 'string' },
    'max-ms': { type: 'string' },
  },
});
const number = (name: keyof typeof values) => {
  const value = Number(values[name]);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`pinholes-main.ts: --${name} must be a positive integer`);
  return value;
};
const result = await addPinholes({
  descriptionUrls: values.description ?? [],
  hosts: values.host ?? [],
  count: number('count'),
  firstPort: number('first-port'),
  leaseSeconds: number('lease'),
  concurrency: number('concurrency'),
  maxMs: number('max-ms'),
}).catch((err: unknown) => ({ added: 0, elapsedMs: 0, error: err instanceof Error ? err.message : String(err) }));
process.stdout.write(`PINHOLES ${JSON.stringify(result)}\n`);
