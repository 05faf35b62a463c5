#!/usr/bin/env -S node --max-semi-space-size=1
// Entry point installed as `upnpd`. The TypeScript sources are compiled to dist/ by `npm ci`
// (the "prepare" script) or `npm run build`.
// The flag keeps a gateway daemon smaller: a 1 MiB young generation instead of V8's 16 MiB
// (measured idle: 72 MB against 84 MB), at no measurable cost in request latency. It applies when
// the file is executed (`upnpd`, `./bin/upnpd.js`), not to `node bin/upnpd.js`.
import { main } from '../dist/core/cli/main.js';

process.exitCode = await main(process.argv.slice(2));
// Sockets and timers are closed by then; exit explicitly so a stray handle cannot keep us alive.
setImmediate(() => process.exit());
