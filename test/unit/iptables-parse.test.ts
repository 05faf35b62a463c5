import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RuleSpec } from '../../core/mapping/types.js';
import { buildRestoreScript, installedMappings, iptablesOptionsSchema, parseSave, type IptablesRuleOptions } from '../../plugins/iptables/rules.js';

/**
 * The periodic check parses all of iptables-save each time: the parser must read exactly what
 * iptables-restore would (held here to the character-by-character reading it replaced) and pair
 * 5000 mappings' rules.
 */

/** The previous splitter, character by character: the reference the faster one must agree with. */
function referenceSplit(line: string): string[] {
  const args: string[] = [];
  let current = '';
  let inArg = false;
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quoted) {
      if (c === '\\' && i + 1 < line.length) current += line[++i];
      else if (c === '"') quoted = false;
      else current += c;
    } else if (c === '"') {
      quoted = true;
      inArg = true;
    } else if (/\s/.test(c)) {
      if (inArg) args.push(current);
      current = '';
      inArg = false;
    } else {
      current += c;
      inArg = true;
    }
  }
  if (inArg) args.push(current);
  return args;
}

const options: IptablesRuleOptions = { ...iptablesOptionsSchema.parse({}), wanInterface: 'wan0' };

describe('parseSave splits rule lines as iptables-restore does', () => {
  it('agrees with the character-by-character reading on any line (quotes, escapes, tabs, non-ASCII spaces)', () => {
    const piece = fc.constantFrom('a', 'b', '-', ' ', '  ', '\t', '"', '\\', '\\"', '"x y"', 'é', '\u00a0', '\u2003', '--comment', '""', '\r');
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 30 }), (pieces) => {
        const rest = pieces.join('');
        const saved = parseSave(`*nat\n-A CHAIN ${rest}\nCOMMIT\n`);
        expect(['CHAIN', ...saved.rules[0]!.args]).toEqual(
          referenceSplit(`CHAIN ${rest}`)
            .slice(0, 1)
            .concat(referenceSplit(`CHAIN ${rest}`).slice(1)),
        );
      }),
      { numRuns: 2000 },
    );
  });

  it('reads a quoted comment with escaped quotes', () => {
    const saved = parseSave('*filter\n-A FORWARD -m comment --comment "admin: \\"replies\\" ok" -j ACCEPT\nCOMMIT\n');
    expect(saved.rules[0]!.args).toEqual(['-m', 'comment', '--comment', 'admin: "replies" ok', '-j', 'ACCEPT']);
    expect(saved.rules[0]!.comment).toBe('admin: "replies" ok');
  });
});

describe('installedMappings with many mappings', () => {
  it('pairs 5000 mappings in nat order, a DNAT rule without its ACCEPT not counted, a duplicate twice', () => {
    const specs: RuleSpec[] = Array.from({ length: 5000 }, (_, i) => ({
      remoteHost: '',
      externalPort: 20000 + i,
      protocol: 'TCP',
      internalClient: `192.168.77.${(i % 100) + 2}`,
      internalPort: 20000 + i,
    }));
    const saved = buildRestoreScript({ remove: [], add: specs }, options).script.replace(/^-I /gm, '-A ');
    const lines = saved.split('\n');
    // The ACCEPT of the mapping on 20007 is gone; the rules of 20009 leaked twice (nat and filter).
    const withoutAccept = lines.filter((l) => !(l.startsWith('-A UPNPD-FORWARD.') && l.includes('tcp/20007 ')));
    const duplicated = withoutAccept.flatMap((l) => (l.includes('tcp/20009 ') ? [l, l] : [l]));
    const installed = installedMappings(parseSave(duplicated.join('\n')), options);
    const expected = specs.filter((s) => s.externalPort !== 20007).flatMap((s) => (s.externalPort === 20009 ? [s, s] : [s]));
    expect(installed).toEqual(expected);
    // Filter rules in another order than nat (a hand-made or restored ruleset) pair all the same.
    const inFilter = (l: string) => l.startsWith('*filter') || l.includes('UPNPD-FORWARD');
    const filterReversed = [...duplicated.filter((l) => !inFilter(l)), '*filter', ...duplicated.filter((l) => inFilter(l) && l !== '*filter').reverse()];
    expect(installedMappings(parseSave(filterReversed.join('\n')), options)).toHaveLength(expected.length);
  });
});
