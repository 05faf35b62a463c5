#!/usr/bin/env -S MALLOC_ARENA_MAX=1 node --max-semi-space-size=1 --max-old-space-size=512 --expose-gc
// Entry point installed as `upnpd`. The TypeScript sources are compiled to dist/ by `npm ci`
// (the "prepare" script) or `npm run build`.
// The settings keep a gateway daemon small (bench/README.md has the measurements):
// - a 1 MiB young generation instead of V8's 16 MiB: idle 72 MB against 84 MB, at no measurable
//   cost in request latency;
// - a heap limit of 512 MiB rather than what V8 derives from the machine's memory (4 GiB on a
//   24 GiB host): V8's heap controller lets the old generation grow by a factor of up to 4 before
//   its next collection when the limit is 2 GiB or more, and 1.3 to 2 below, so a burst (5000
//   mappings added, then walked) leaves fewer pages behind. The node process with 5000 mappings
//   settled (bench/rss-probe.ts): 70.3–71.2 MB in four runs with a limit of 256 or 512 MiB, against
//   71.0–82.0 in four without. A connection flood's garbage is bounded alike. It costs CPU: more
//   collections, 17–31 µs more daemon CPU per GetExternalIPAddress on new connections (5–10 %;
//   bench/loopback-ab.ts, two runs of 8 and 10 interleaved rounds). By the heap's size
//   per mapping (about 0.6 KB) some 500,000 mappings fit, an estimate; for more, run node with these
//   flags and a larger --max-old-space-size;
// - `gc`, with which core/heap-trimmer.ts gives a burst's garbage back once the burst is over
//   (5000 mappings: 157 MB → 89 MB);
// - one malloc arena instead of one per thread: the threads that allocate while requests are
//   served otherwise each keep an arena's worth of freed memory (89 MB → 80 MB).
// They apply when the file is executed (`upnpd`, `./bin/upnpd.js`), not to `node bin/upnpd.js`.

// Node's default for SIGHUP ends the process, and the daemon takes it (a reload) only once its
// configuration is read; a SIGHUP before that (a PPP ip-up or logrotate script sending it while
// upnpd starts) would end it, and systemd does not restart a unit that SIGHUP ended. Until then a
// SIGHUP is ignored: the configuration about to be read is the newest anyway.
const ignoreEarlyHangup = () => {};
process.on('SIGHUP', ignoreEarlyHangup);
const { main } = await import('../dist/app/cli.js');

process.exitCode = await main(process.argv.slice(2));
// Output to a pipe is written asynchronously: process.exit() would drop what the pipe could not take
// yet (`upnpd list --json | jq` got the first 64 KiB). An empty write calls back once all before it is
// out; a reader that is gone (`| head`: EPIPE) wants no more.
await Promise.all(
  [process.stdout, process.stderr].map(
    (stream) =>
      new Promise((resolve) => {
        stream.once('error', () => resolve(undefined));
        stream.write('', () => resolve(undefined));
      }),
  ),
);
// Sockets and timers are closed by then; exit explicitly so a stray handle cannot keep us alive.
setImmediate(() => process.exit());
