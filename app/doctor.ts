import { access, constants, mkdir } from 'node:fs/promises';
import { ProcessCommandRunner, type CommandRunner } from '../core/command-runner.js';
import { loadConfig } from '../core/config/load.js';
import type { ResolvedConfig } from '../core/config/schema.js';
import { lanAddresses } from '../core/daemon.js';
import { messageOf } from '../core/errors.js';
import { OsNetworkInfo, type NetworkInfo } from '../core/net/network-info.js';
import type { Finding } from '../core/plugins/types.js';
import { OS_READERS, hostFindings, otherIgdFindings, preStartFindings, type HostReaders } from './checks/index.js';
import { assemblePlugins, createPlugins, dryRunDefaults, inertServices, pluginContainer } from './compose.js';
import { parseCommandLine } from './command-line.js';

export const DOCTOR_USAGE = `Usage: upnpd doctor [--json] [the daemon's options]

Runs the checks the daemon runs at start, and more, without starting it: the configuration, the
firewall tools and kernel support the chosen backend needs, the state directory, IP forwarding,
the forward path, the WAN and LAN addresses, the ports, other IGDs on the LAN. Prints a checklist
(ok / warning / error, each with its fix); exits 0 when nothing is an error, 1 otherwise.
`;

const CONFIG_FIX = 'correct the file or flag it names (upnpd --help lists the flags)';

export interface DoctorEnvironment {
  readonly network?: NetworkInfo;
  readonly commands?: CommandRunner;
  readonly readers?: HostReaders;
}

/** Every check, in the order a person would fix them. */
export async function doctorFindings(givenConfig: ResolvedConfig, env: DoctorEnvironment = {}): Promise<Finding[]> {
  const config = dryRunDefaults(givenConfig);
  const network = env.network ?? new OsNetworkInfo();
  const commands = env.commands ?? new ProcessCommandRunner();
  const readers = env.readers ?? OS_READERS;
  const findings: Finding[] = [{ check: 'config', severity: 'ok', message: `configuration valid: ${config.source}` }];

  let lan;
  try {
    lan = lanAddresses(config, network);
  } catch (err) {
    findings.push({ check: 'lan-address', severity: 'error', message: messageOf(err), fix: 'set `lan` (or --lan IFACE) to an interface with an IPv4 address' });
    lan = undefined;
  }

  const services = inertServices(network, commands, lan ?? []);
  const container = pluginContainer(config, services);
  // The other plugins are built as at start (a plugin's create may throw); the backend below, whose
  // check reports an unknown or missing one.
  const others = placedOrNone(config)?.filter((p) => p.spec.kind !== 'backend') ?? [];
  try {
    createPlugins(others, container, config, services.logger);
  } catch (err) {
    findings[0] = { check: 'config', severity: 'error', message: messageOf(err), fix: CONFIG_FIX };
  }
  let firewall;
  try {
    const backendSpecs = assemblePlugins(config).filter((p) => p.spec.kind === 'backend');
    firewall = createPlugins(backendSpecs, container, config, services.logger)[0]?.firewall;
    const capabilities = await firewall?.probe();
    findings.push({
      check: 'firewall',
      severity: 'ok',
      message: `the ${capabilities?.dialect ?? 'firewall'} backend can work here${
        capabilities
          ? ` (${Object.entries(capabilities.details)
              .map(([k, v]) => `${k}: ${v}`)
              .join(', ')})`
          : ''
      }`,
    });
  } catch (err) {
    findings.push({
      check: 'firewall',
      severity: 'error',
      message: `the firewall backend cannot work here: ${messageOf(err)}`,
      fix: 'install what it names, run as root (or with CAP_NET_ADMIN), or choose another --backend',
    });
  }

  if (config.stateDir) findings.push(await stateDirFinding(config.stateDir));
  if (lan) findings.push(...(await preStartFindings(config, lan, readers)));
  findings.push(...(await hostFindings(config, network, readers, firewall)));
  if (lan) findings.push(...(await otherIgdFindings(config, lan, readers)));
  return findings;
}

function placedOrNone(config: ResolvedConfig): ReturnType<typeof assemblePlugins> | undefined {
  try {
    return assemblePlugins(config);
  } catch {
    return undefined;
  }
}

async function stateDirFinding(stateDir: string): Promise<Finding> {
  try {
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    await access(stateDir, constants.W_OK);
    return { check: 'state-dir', severity: 'ok', message: `${stateDir} is writable` };
  } catch (err) {
    return {
      check: 'state-dir',
      severity: 'warning',
      message: `${stateDir} cannot be written (${messageOf(err)}): upnpd would run without keeping its mappings across restarts`,
      fix: `create ${stateDir} writable by the user upnpd runs as, or set another \`stateDir\``,
    };
  }
}

const MARK: Record<Finding['severity'], string> = { ok: 'ok     ', warning: 'warning', error: 'error  ' };

export function formatFindings(findings: readonly Finding[]): string {
  return findings
    .map((f) => `${MARK[f.severity]} ${f.check}: ${f.message}${f.fix ? `\n        fix: ${f.fix}` : ''}`)
    .concat('', summaryOf(findings))
    .join('\n');
}

function summaryOf(findings: readonly Finding[]): string {
  const count = (severity: Finding['severity']) => findings.filter((f) => f.severity === severity).length;
  return `${count('error')} error(s), ${count('warning')} warning(s), ${count('ok')} ok`;
}

/** `upnpd doctor [--json] [options]`: resolves with the exit status. */
export async function doctor(argv: readonly string[], out: NodeJS.WritableStream = process.stdout, env: DoctorEnvironment = {}): Promise<number> {
  const json = argv.includes('--json');
  const rest = argv.filter((a) => a !== '--json');
  if (rest.includes('--help')) {
    out.write(DOCTOR_USAGE);
    return 0;
  }
  let findings: Finding[];
  try {
    const commandLine = parseCommandLine(rest);
    const config = await loadConfig(commandLine.load);
    findings = await doctorFindings(config, env);
  } catch (err) {
    findings = [{ check: 'config', severity: 'error', message: messageOf(err), fix: CONFIG_FIX }];
  }
  const failed = findings.some((f) => f.severity === 'error');
  out.write(json ? `${JSON.stringify({ ok: !failed, findings }, null, 2)}\n` : `${formatFindings(findings)}\n`);
  return failed ? 1 : 0;
}
