#!/usr/bin/env node
// Entry point installed as `upnpd`. The TypeScript sources are compiled to dist/ by `npm ci`
// (the "prepare" script) or `npm run build`.
import { main } from '../dist/core/cli/main.js';

process.exitCode = await main(process.argv.slice(2));
// Sockets and timers are closed by then; exit explicitly so a stray handle cannot keep us alive.
setImmediate(() => process.exit());
