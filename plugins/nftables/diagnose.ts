import type { Finding } from 'upnpd';
import type { NftablesOptions } from './options.js';

interface ChainInfo {
  readonly family: string;
  readonly table: string;
  readonly name: string;
  readonly hook?: string;
  readonly policy?: string;
}

interface RuleInfo {
  readonly family: string;
  readonly table: string;
  readonly chain: string;
  readonly expr?: ReadonlyArray<Record<string, unknown>>;
}

/**
 * The forward path, from `nft -t -j list ruleset`: every base chain on the forward hook whose policy
 * or last rule drops, and that does not jump to upnpd's accept chain, drops mapped traffic. (An
 * accept in upnpd's own table cannot override it: each base chain decides on its own.)
 */
export function forwardPathFindings(rulesetJson: string, options: Pick<NftablesOptions, 'table' | 'forwardJump'>): Finding[] {
  let objects: ReadonlyArray<Record<string, unknown>>;
  try {
    objects = (JSON.parse(rulesetJson) as { nftables?: ReadonlyArray<Record<string, unknown>> }).nftables ?? [];
  } catch {
    return [
      { check: 'forward-path', severity: 'warning', message: 'cannot read the nftables ruleset (nft -t -j list ruleset): the forward path was not checked' },
    ];
  }
  const chains = objects.map((o) => o.chain as ChainInfo | undefined).filter((c): c is ChainInfo => c !== undefined);
  const rules = objects.map((o) => o.rule as RuleInfo | undefined).filter((r): r is RuleInfo => r !== undefined);
  const ourChain = `${options.table}-forward`;
  const rulesOf = (c: ChainInfo) => rules.filter((r) => r.family === c.family && r.table === c.table && r.chain === c.name);
  const jumpsToUs = (r: RuleInfo) => (r.expr ?? []).some((e) => [e.jump, e.goto].some((v) => (v as { target?: unknown } | undefined)?.target === ourChain));
  const dropsAtEnd = (c: ChainInfo) => {
    const last = rulesOf(c).at(-1);
    return last !== undefined && (last.expr ?? []).some((e) => 'drop' in e || 'reject' in e);
  };
  const findings: Finding[] = [];
  for (const chain of chains.filter((c) => c.hook === 'forward')) {
    if (chain.family !== 'inet' && chain.family !== 'ip') continue;
    const where = `chain ${chain.name} of table ${chain.family} ${chain.table}`;
    const drops = chain.policy === 'drop' ? 'has policy drop' : dropsAtEnd(chain) ? 'ends in a drop' : undefined;
    if (!drops) continue;
    const jump = options.forwardJump;
    if (jump && jump.family === chain.family && jump.table === chain.table && jump.chain === chain.name && !rulesOf(chain).some(jumpsToUs)) {
      findings.push({ check: 'forward-path', severity: 'ok', message: `${where} ${drops}; upnpd jumps from it when it starts (forwardJump)` });
      continue;
    }
    if (rulesOf(chain).some(jumpsToUs)) {
      findings.push({ check: 'forward-path', severity: 'ok', message: `${where} ${drops} and jumps to upnpd's ${ourChain}: mapped traffic is accepted there` });
      continue;
    }
    findings.push({
      check: 'forward-path',
      severity: 'error',
      message: `${where} ${drops} and upnpd does not jump from it: mapped traffic is dropped there, so mappings answer 200 and nothing reaches the client`,
      fix: `nftables({ forwardJump: { family: '${chain.family}', table: '${chain.table}', chain: '${chain.name}' } }) in the plugins of upnpd.config.js`,
    });
  }
  if (findings.length === 0) findings.push({ check: 'forward-path', severity: 'ok', message: 'no forward chain drops mapped traffic' });
  return findings;
}
