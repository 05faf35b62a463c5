import { readFile } from 'node:fs/promises';
import { messageOf } from '../core/errors.js';

export const MIGRATE_USAGE = `Usage: upnpd migrate FILE

Reads the linux-igd configuration (/etc/upnpd.conf) or a miniupnpd.conf (which one is told from its
keys) and prints an equivalent upnpd.config.js to stdout, with a comment for each setting that has
no equivalent. Check the result with \`upnpd check --config FILE\`.
`;

export type OldFormat = 'linux-igd' | 'miniupnpd';

/** One `key = value` (linux-igd) or `key=value` (miniupnpd) line, or a miniupnpd permission rule. */
interface Setting {
  readonly key: string;
  readonly value: string;
  readonly line: number;
}

/** Keys only linux-igd's upnpd.conf has. */
const LINUX_IGD_KEYS = new Set([
  'insert_forward_rules',
  'create_forward_rules',
  'forward_rules_append',
  'forward_chain_name',
  'prerouting_chain_name',
  'iptables_location',
  'debug_mode',
  'upstream_bitrate',
  'downstream_bitrate',
  'duration',
  'description_document_name',
  'xml_document_path',
  'listenport',
]);

export function parseSettings(text: string): { settings: Setting[]; rules: string[] } {
  const settings: Setting[] = [];
  const rules: string[] = [];
  for (const [index, raw] of text.split('\n').entries()) {
    const line = raw.replace(/#.*$/, '').trim();
    if (!line) continue;
    if (/^(allow|deny)\s/.test(line)) {
      rules.push(line.replace(/\s+/g, ' '));
      continue;
    }
    const match = /^([A-Za-z_][\w-]*)\s*=\s*(.*)$/.exec(line);
    if (!match) continue;
    settings.push({ key: match[1]!, value: match[2]!.trim().replace(/^"(.*)"$/, '$1'), line: index + 1 });
  }
  return { settings, rules };
}

export function detectFormat(settings: readonly Setting[]): OldFormat {
  return settings.some((s) => LINUX_IGD_KEYS.has(s.key)) ? 'linux-igd' : 'miniupnpd';
}

const yes = (value: string) => /^(yes|on|true|1)$/i.test(value);

/** What the migration produces: config keys, plugin calls, and notes for what has no equivalent. */
interface Migrated {
  readonly config: Array<readonly [key: string, value: string, comment?: string]>;
  readonly plugins: Array<readonly [call: string, comment?: string]>;
  readonly notes: string[];
  readonly imports: Set<string>;
}

function migrateLinuxIgd(settings: readonly Setting[]): Migrated {
  const m: Migrated = {
    config: [],
    plugins: [],
    notes: ['linux-igd took its interfaces on the command line (upnpd EXT_IF INT_IF): set `wan` and `lan` (or pass --wan and --lan)'],
    imports: new Set(['defineConfig', 'iptables']),
  };
  const iptablesOptions: string[] = [];
  const iptablesNotes: string[] = [];
  for (const { key, value } of settings) {
    switch (key) {
      case 'insert_forward_rules':
      case 'create_forward_rules':
        iptablesOptions.push(`insertForwardRules: ${yes(value)}`);
        break;
      case 'forward_chain_name':
      case 'prerouting_chain_name': {
        const builtIn = key === 'forward_chain_name' ? 'FORWARD' : 'PREROUTING';
        const own = key === 'forward_chain_name' ? 'UPNPD-FORWARD' : 'UPNPD-PREROUTING';
        iptablesNotes.push(
          value === builtIn
            ? `${key} = ${value}: upnpd keeps its rules in a chain of its own (${own}), jumped to once from ${builtIn}; it never flushes a chain it does not own`
            : `${key} = ${value}: upnpd keeps its rules in ${own}, jumped to from ${builtIn}; your chain ${value} is left alone (set forwardChain/preroutingChain to rename upnpd's own chain)`,
        );
        break;
      }
      case 'duration': {
        const seconds = /^\d+$/.test(value) ? Number(value) : undefined;
        if (seconds !== undefined && seconds >= 1 && seconds <= 604800) {
          m.config.push(['lease', `{ defaultSeconds: ${seconds}, allowPermanent: false }`, 'duration: the lease of a mapping asked for without one']);
        } else {
          m.notes.push(`duration = ${value}: no equivalent (upnpd takes a number of seconds, 1 to 604800, as lease.defaultSeconds)`);
        }
        break;
      }
      case 'debug_mode': {
        const level = ['warn', 'info', 'debug', 'trace'][Math.min(3, Math.max(0, Number(value) || 0))]!;
        m.config.push(['logLevel', JSON.stringify(level), `debug_mode = ${value}`]);
        break;
      }
      case 'listenport':
        if (/^\d+$/.test(value) && Number(value) <= 65535) m.config.push(['httpPort', String(Number(value)), 'listenport']);
        break;
      case 'iptables_location':
        m.notes.push(
          `iptables_location = ${value}: upnpd runs iptables-restore and iptables-save from PATH (iptables({ flavour: 'iptables-legacy' }) picks the legacy ones)`,
        );
        break;
      case 'forward_rules_append':
        m.notes.push(`forward_rules_append = ${value}: no equivalent (upnpd's chain is jumped to once; the order inside it does not matter)`);
        break;
      case 'upstream_bitrate':
      case 'downstream_bitrate':
        m.notes.push(`${key} = ${value}: no equivalent (GetCommonLinkProperties reports the WAN link speed the kernel knows)`);
        break;
      case 'description_document_name':
      case 'xml_document_path':
        m.notes.push(`${key} = ${value}: no equivalent (upnpd builds its descriptions itself)`);
        break;
      default:
        m.notes.push(`${key} = ${value}: unknown setting, left out`);
    }
  }
  m.plugins.push([`iptables({ ${iptablesOptions.join(', ')} })`, iptablesNotes.join('\n')]);
  return m;
}

function migrateMiniupnpd(settings: readonly Setting[], rules: readonly string[]): Migrated {
  const m: Migrated = { config: [], plugins: [], notes: [], imports: new Set(['defineConfig']) };
  const lan: string[] = [];
  // friendly_name and enable_upnp both land in `upnp`: one object, or the second would replace the first.
  const upnp: string[] = [];
  const upnpWhy: string[] = [];
  for (const { key, value } of settings) {
    switch (key) {
      case 'enable_natpmp':
      case 'enable_pcp_pmp':
        m.config.push(['natPmp', String(yes(value)), `${key}: NAT-PMP and PCP on UDP 5351`]);
        break;
      case 'enable_upnp':
        upnp.push(`enabled: ${yes(value)}`);
        upnpWhy.push(key);
        break;
      case 'ext_ifname':
        m.config.push(['wan', JSON.stringify(value)]);
        break;
      case 'ext_ip':
        m.config.push(['externalIp', JSON.stringify(value)]);
        break;
      case 'listening_ip':
        if (/^[\w.@:-]{1,15}$/.test(value) && !/^\d+\.\d+\.\d+\.\d+/.test(value)) lan.push(value);
        else m.notes.push(`listening_ip = ${value}: give the LAN interface's name in \`lan\` (upnpd serves every address of it)`);
        break;
      case 'port': // miniupnpd's older name of http_port (its options.c takes both)
      case 'http_port':
        if (/^\d+$/.test(value) && Number(value) <= 65535) m.config.push(['httpPort', String(Number(value))]);
        break;
      case 'secure_mode':
        m.config.push(['secureMode', String(yes(value))]);
        break;
      case 'max_lifetime':
        if (/^\d+$/.test(value) && Number(value) >= 1 && Number(value) <= 604800) m.config.push(['lease', `{ maxSeconds: ${Number(value)} }`, 'max_lifetime']);
        break;
      case 'friendly_name':
        upnp.push(`friendlyName: ${JSON.stringify(value.slice(0, 64))}`);
        upnpWhy.push(key);
        break;
      case 'upnp_forward_chain':
      case 'upnp_nat_chain':
        m.notes.push(`${key} = ${value}: upnpd keeps its rules in chains of its own (iptables()) or a table of its own (nftables())`);
        break;
      default:
        m.notes.push(`${key} = ${value}: no equivalent in upnpd (yet), left out`);
    }
  }
  if (upnp.length > 0) m.config.push(['upnp', `{ ${upnp.join(', ')} }`, upnpWhy.join(', ')]);
  if (lan.length > 0) m.config.unshift(['lan', JSON.stringify(lan)]);
  m.config.push(['backend', "'nftables'", "miniupnpd's firewall is chosen when it is built: 'iptables' if yours was miniupnpd-iptables"]);
  if (rules.length > 0) {
    m.imports.add('permissions');
    // miniupnpd denies what no rule allows.
    m.plugins.push([`permissions({ rules: ${JSON.stringify(rules)}, defaultAction: 'deny' })`, 'allow/deny lines as miniupnpd reads them: first match wins']);
  }
  return m;
}

/** The upnpd.config.js equivalent to an old configuration, as the text of an ES module. */
export function migrateText(text: string, source: string): { format: OldFormat; module: string } {
  const { settings, rules } = parseSettings(text);
  const format = detectFormat(settings);
  const m = format === 'linux-igd' ? migrateLinuxIgd(settings) : migrateMiniupnpd(settings, rules);
  const comment = (text: string | undefined, indent: string) =>
    text
      ? `${text
          .split('\n')
          .map((line) => `${indent}// ${line}`)
          .join('\n')}\n`
      : '';
  const lines = [
    `// Migrated by \`upnpd migrate\` from ${source} (${format}). Check it with \`upnpd check --config FILE\`.`,
    `import { ${[...m.imports].join(', ')} } from 'upnpd';`,
    '',
    'export default defineConfig({',
    ...m.config.map(([key, value, why]) => `${comment(why, '  ')}  ${key}: ${value},`),
    m.plugins.length > 0 ? `  plugins: [\n${m.plugins.map(([call, why]) => `${comment(why, '    ')}    ${call},`).join('\n')}\n  ],` : undefined,
    '});',
    ...(m.notes.length > 0 ? ['', '// Settings with no equivalent:', ...m.notes.map((note) => `// - ${note}`)] : []),
    '',
  ].filter((line): line is string => line !== undefined);
  return { format, module: lines.join('\n') };
}

/** `upnpd migrate FILE`: resolves with the exit status. */
export async function migrate(
  argv: readonly string[],
  out: NodeJS.WritableStream = process.stdout,
  err: NodeJS.WritableStream = process.stderr,
): Promise<number> {
  const [file, ...rest] = argv;
  if (!file || file === '--help' || rest.length > 0) {
    (file === '--help' ? out : err).write(MIGRATE_USAGE);
    return file === '--help' ? 0 : 2;
  }
  try {
    out.write(migrateText(await readFile(file, 'utf8'), file).module);
    return 0;
  } catch (e) {
    err.write(`upnpd migrate: ${file}: ${messageOf(e)}\n`);
    return 2;
  }
}
