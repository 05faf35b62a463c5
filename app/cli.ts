import 'reflect-metadata';
import { execFile } from 'node:child_process';
import { loadConfig } from '../core/config/load.js';
import type { ResolvedConfig } from '../core/config/schema.js';
import type { Daemon } from '../core/daemon.js';
import { ConfigError, PluginRegistrationError, UpnpdError, messageOf } from '../core/errors.js';
import { createRootLogger } from '../core/logging.js';
import { upnpdVersion } from '../core/upnp/http/server-string.js';
import { parseCommandLine, type CommandLine } from './command-line.js';
import { startDaemon } from './compose.js';
import { startControlServer, type ControlServer } from './control/server.js';
import { InstanceLockedError, lockInstance, type InstanceLock, type LockedDirectory } from './instance-lock.js';
import type { AdminServer } from './admin/server.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

const USAGE = `Usage: upnpd [options]
       upnpd doctor [--json] [options]   check this host and the configuration, start nothing
       upnpd check [--config FILE]       validate the configuration and exit (0 valid, 2 not)
       upnpd migrate FILE                print an upnpd.config.js for an /etc/upnpd.conf or miniupnpd.conf
       upnpd status|list [--json]        ask the running daemon (through DIR/upnpd.sock)
       upnpd delete PROTOCOL PORT [--remote-host ADDR] | upnpd purge [--client ADDR]

UPnP Internet Gateway Device daemon. Options override upnpd.config.js (or .mjs/.cjs).

  --config FILE         configuration file (default: upnpd.config.{js,mjs,cjs} searched from the
                        current directory upwards, then in /etc/upnpd/)
  --lan IFACE           LAN interface to serve (repeatable)                       [config: lan]
  --wan IFACE           WAN interface                                             [config: wan]
  --external-ip ADDR    external IPv4 address to report                           [config: externalIp]
  --backend NAME        firewall backend: iptables | nftables | dry-run, or the
                        name of one listed in the config's plugins              [config: backend]
  --dry-run             change no firewall; show what would be applied; listen on
                        loopback only unless --lan is given                       [config: dryRun]
  --http-port N         HTTP port for descriptions/control/events (0: any free)   [config: httpPort]
  --no-ipv6             serve SSDP and HTTP over IPv4 only (not on the LAN
                        interfaces' IPv6 addresses)                               [config: ipv6]
  --admin-listen ADDR:PORT  serve /metrics and a status page there (loopback only
                        unless admin.allowNonLoopback)                            [config: admin.listen]
  --runtime-dir DIR     where the control socket upnpd.sock goes (default /run/upnpd)
                                                                                  [config: runtimeDir]
  --state-dir DIR       keep the mappings (DIR/mappings.json + mappings.journal,
                        on disk before each answer, reinstalled at start with the
                        lease time they had left) and the SSDP BOOTID; one upnpd
                        per DIR (a second exits 1)                                [config: stateDir]
  --log-level LEVEL     fatal | error | warn | info | debug | trace | silent       [config: logLevel]
  --help                print this help
  --version             print the version

Signals: SIGTERM/SIGINT stop cleanly (rules removed unless keepRulesOnShutdown); SIGHUP reloads the
configuration (log level, lease policy and the policy plugins' options apply at once; other changes
are named as needing a restart).
`;

/** Runs the daemon until a signal stops it; resolves with the exit status. */
export async function main(argv: readonly string[]): Promise<number> {
  // Subcommands are loaded only when asked for: the daemon does not carry them.
  if (argv[0] === 'doctor') return (await import('./doctor.js')).doctor(argv.slice(1));
  if (argv[0] === 'check') return (await import('./check.js')).check(argv.slice(1));
  if (argv[0] === 'migrate') return (await import('./migrate.js')).migrate(argv.slice(1));
  if (argv[0] === 'status' || argv[0] === 'list' || argv[0] === 'delete' || argv[0] === 'purge') {
    return (await import('./control/client.js')).controlCommand(argv[0], argv.slice(1));
  }
  let commandLine: CommandLine;
  let config;
  const skippedDirs: string[] = [];
  try {
    commandLine = parseCommandLine(argv);
    if (commandLine.help) {
      process.stdout.write(USAGE);
      return EXIT_OK;
    }
    if (commandLine.version) {
      process.stdout.write(`upnpd ${upnpdVersion()}\n`);
      return EXIT_OK;
    }
    config = await loadConfig({ ...commandLine.load, onSkip: (dir, error) => skippedDirs.push(`${dir} (${error.message})`) });
    // The admin page (and prom-client under it, 1.6 MB of heap) is loaded only when it is served.
    if (config.admin.listen) (await import('./admin/server.js')).checkAdminListen(config.admin.listen, config.admin.allowNonLoopback);
  } catch (err) {
    process.stderr.write(`upnpd: ${messageOf(err)}\n`);
    if (err instanceof ConfigError) process.stderr.write('Run upnpd --help for the options.\n');
    return EXIT_USAGE;
  }

  const { logger, output } = createRootLogger({ level: config.logLevel });
  if (skippedDirs.length > 0) logger.debug({ skipped: skippedDirs }, `config search: skipped what could not be read: ${skippedDirs.join(', ')}`);
  // Signals are handled from before the start: the HTTP server answers (and a supervisor may send
  // SIGTERM) while the start is still finishing (SSDP announcements), and Node's default for
  // SIGTERM would leave the rules installed. A stop asked for during the start runs after it.
  let daemon: Daemon | undefined;
  let stopAsked: ((daemon: Daemon) => void) | undefined;
  let control: ControlServer | undefined;
  let admin: AdminServer | undefined;
  // Made before the start, so that the metrics count every apply, the restore's included.
  const applyTimes = config.admin.listen ? new (await import('./admin/metrics.js')).ApplyTimes() : undefined;
  let stopping = false;
  let resolveExit!: (code: number) => void;
  const exited = new Promise<number>((resolve) => (resolveExit = resolve));
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn(`${signal} again: exiting without finishing the cleanup`);
      resolveExit(EXIT_FAILURE);
      return;
    }
    stopping = true;
    logger.info(`${signal}: shutting down${daemon ? '' : ' once the start has finished'}`);
    const run = (running: Daemon) =>
      Promise.all([control?.close(), admin?.close()])
        .then(() => running.stop())
        .then(
          () => resolveExit(EXIT_OK),
          (err: unknown) => {
            logger.error({ err }, `shutdown failed: ${messageOf(err)}`);
            resolveExit(EXIT_FAILURE);
          },
        );
    if (daemon) void run(daemon);
    else stopAsked = (started) => void run(started);
  };
  // SIGHUP's default would end the process too; a reload waits for a running daemon. One asked for
  // during the start (which may take long: a large table to restore, a firewall to wait for) runs
  // once it has finished: the admin may have edited the file after it was read.
  let reloadAsked = false;
  const reload = () => {
    if (!daemon) {
      if (!reloadAsked) logger.info('SIGHUP during the start: the configuration is read again once the start has finished');
      reloadAsked = true;
      return;
    }
    const running = daemon;
    loadConfig(commandLine.load).then(
      (next) => running.reload(next),
      (err: unknown) => logger.error({ err }, `SIGHUP: configuration not reloaded, keeping the running one: ${messageOf(err)}`),
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('SIGHUP', reload);
  process.on('SIGXFSZ', ignoreFileSizeSignal);

  let lock: InstanceLock | undefined;
  try {
    // Before anything is read or changed: a second upnpd would write the first one's journal and,
    // its backend starting, flush the first one's chains.
    lock = await lockInstance(lockedDirectories(config), logger);
    // A second signal during the start gives up on it (the start may wait on the firewall).
    const started = await Promise.race([
      startDaemon(config, { logger, logOutput: output, onFirewallApply: applyTimes?.record }),
      exited.then((code) => ({ abandoned: code })),
    ]);
    if ('abandoned' in started) {
      await lock.release();
      await output.flush();
      return started.abandoned;
    }
    daemon = started;
    control = await startControlServer(started, config.runtimeDir, logger);
    if (config.admin.listen) {
      const { startAdminServer } = await import('./admin/server.js');
      admin = await startAdminServer(started, config.admin.listen, { ...config.admin, applyTimes }, logger).catch((err: unknown) => {
        logger.error({ err }, `no admin listener on ${config.admin.listen}: ${messageOf(err)}`);
        return undefined;
      });
    }
    notifySystemd(logger);
    if (reloadAsked && !stopping) reload();
  } catch (err) {
    await lock?.release();
    const usage = err instanceof ConfigError || err instanceof PluginRegistrationError;
    // A mistake in the configuration is told by its message (the file and key), as is another upnpd
    // running; a stack trace is for upnpd's own failures.
    const told = usage || err instanceof InstanceLockedError;
    logger.fatal({ ...(told ? {} : { err }), code: err instanceof UpnpdError ? err.code : undefined }, `upnpd could not start: ${messageOf(err)}`);
    process.stderr.write(`upnpd: ${messageOf(err)}\n`);
    await output.flush();
    return usage ? EXIT_USAGE : EXIT_FAILURE;
  } finally {
    if (!daemon)
      for (const [signal, handler] of [
        ['SIGTERM', stop],
        ['SIGINT', stop],
        ['SIGHUP', reload],
        ['SIGXFSZ', ignoreFileSizeSignal],
      ] as const)
        process.off(signal, handler);
  }
  stopAsked?.(daemon);

  process.on('unhandledRejection', (reason) => logger.error({ err: reason }, `unhandled rejection: ${messageOf(reason)}`));
  const exitCode = await exited;
  await lock?.release();
  await output.flush();
  return exitCode;
}

/**
 * What a daemon locks for its life (app/instance-lock.ts): its state directory, whose journal a
 * second upnpd would write too; and, when it changes the firewall, its runtime directory, which
 * the one started by hand shares with the systemd unit's (/run/upnpd): a second one's backend
 * start-up would flush the first one's chains. A dry-run (a laptop, tests) changes no firewall and
 * locks only a state directory it is given.
 */
function lockedDirectories(config: Pick<ResolvedConfig, 'stateDir' | 'runtimeDir' | 'dryRun' | 'backend'>): LockedDirectory[] {
  const directories: LockedDirectory[] = [];
  if (config.stateDir) directories.push({ dir: config.stateDir, role: 'state directory', instead: 'give this one another --state-dir' });
  if (!config.dryRun && config.backend !== 'dry-run')
    directories.push({ dir: config.runtimeDir, role: 'runtime directory', also: "and changes this host's firewall" });
  return directories;
}

/**
 * A write past the file-size limit (RLIMIT_FSIZE: systemd's LimitFSIZE=, a shell's ulimit -f)
 * raises SIGXFSZ. Node ignores it, but signal-exit (write-file-atomic's exit hook)
 * catches it and, when its handler is the only one, raises it again: the daemon ended at the
 * first state write past the limit. With a listener of ours the write fails with EFBIG instead,
 * and the journal handles it as a full disk (state.onWriteFailure).
 */
function ignoreFileSizeSignal(): void {}

/**
 * Under systemd (`Type=notify`, `NotifyAccess=all` in contrib/systemd/upnpd.service): tells it the
 * daemon is ready, through systemd-notify (Node has no datagram Unix sockets). Elsewhere: nothing.
 */
function notifySystemd(logger: { warn(obj: object, msg: string): void }): void {
  if (!process.env.NOTIFY_SOCKET) return;
  execFile('systemd-notify', ['--ready', `--pid=${process.pid}`, '--status=serving'], (err) => {
    if (err) logger.warn({ err }, `could not tell systemd that upnpd is ready (systemd-notify): ${err.message}`);
  });
}
