import type { Finding } from 'upnpd';
import type { IptablesRuleOptions } from './rules.js';

/** The policy of a built-in chain from `iptables -S CHAIN` (`-P FORWARD DROP`), if listed. */
export function policyOf(listing: string, chain: string): string | undefined {
  return new RegExp(`^-P ${chain} (\\w+)`, 'm').exec(listing)?.[1];
}

/** FORWARD drops by default and upnpd adds no ACCEPT rules of its own: mapped traffic is dropped. */
export function forwardPolicyFinding(forwardListing: string, options: Pick<IptablesRuleOptions, 'insertForwardRules'>): Finding {
  const policy = policyOf(forwardListing, 'FORWARD');
  if (policy === 'DROP' && !options.insertForwardRules) {
    return {
      check: 'forward-path',
      severity: 'error',
      message:
        'the FORWARD chain has policy DROP and insertForwardRules is off: mapped traffic is dropped in FORWARD, so mappings answer 200 and nothing reaches the client',
      fix: 'iptables({ insertForwardRules: true }) in the plugins of upnpd.config.js (or accept DNATed traffic yourself: iptables -A FORWARD -m conntrack --ctstate DNAT -j ACCEPT)',
    };
  }
  const how = policy === 'DROP' ? 'has policy DROP; upnpd adds an ACCEPT rule per mapping' : `has policy ${policy ?? 'unknown'}`;
  return { check: 'forward-path', severity: 'ok', message: `the FORWARD chain ${how}` };
}

/** What a save listing holds besides empty built-in chains: rules, or a policy other than ACCEPT. */
export function hasOwnRules(saveOutput: string, tag: string): boolean {
  return saveOutput
    .split('\n')
    .some((line) => (line.startsWith('-A ') && !line.includes(`"${tag} `) && !line.includes(` ${tag} `)) || /^:\S+ (DROP|REJECT) /.test(line));
}

/**
 * Rules in both iptables-legacy and iptables-nft: each is a separate set of tables in the kernel,
 * both run, and an ACCEPT in one cannot override a DROP in the other.
 */
export function mixedFlavourFinding(used: string, other: string, otherSave: string | undefined, tag: string): Finding {
  if (otherSave === undefined || !hasOwnRules(otherSave, tag)) {
    return { check: 'iptables-flavours', severity: 'ok', message: `no ${other} rules besides the ${used} ones upnpd uses` };
  }
  return {
    check: 'iptables-flavours',
    severity: 'warning',
    message: `${other} has rules too, beside the ${used} rules upnpd installs: both run, and an ACCEPT in one cannot override a DROP in the other, so mapped traffic may be dropped`,
    fix: `use one flavour for the whole firewall: move the ${other} rules over, or set iptables({ flavour: '${other === 'iptables-legacy' ? 'iptables-legacy' : 'iptables'}' }) if that is where the admin's rules are`,
  };
}
