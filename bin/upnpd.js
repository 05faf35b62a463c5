#!/usr/bin/env -S node --max-semi-space-size=1 --expose-gc
// Entry point installed as `upnpd`. The TypeScript sources are compiled to dist/ by `npm ci`
// (the "prepare" script) or `npm run build`.
// The flags keep a gateway daemon small. A 1 MiB young generation instead of V8's 16 MiB keeps
// short-lived request garbage from inflating the resident size, at no measurable cost in
// throughput; `gc` lets the daemon run V8's memory-reducing collection once the mapping table is
// quiet after a burst of changes (core/daemon.ts). Measured with 5000 nftables mappings: 72 MB
// idle and 77 MB a few seconds after the last change, against 84 MB and 130-180 MB without.
// They apply when the file is executed (`upnpd`, `./bin/upnpd.js`), not to `node bin/upnpd.js`.
import { main } from '../dist/core/cli/main.js';

process.exitCode = await main(process.argv.slice(2));
// Sockets and timers are closed by then; exit explicitly so a stray handle cannot keep us alive.
setImmediate(() => process.exit());
