import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { keyString, type RuleSpec } from '../../core/mapping/types.js';
import { buildChangeScript, buildInitScript, parseInstalledRules, pinholePlace, type NftablesSettings } from '../../plugins/nftables/rules.js';
import { GOLDEN_CHANGES, GOLDEN_PINHOLE_CHANGES } from '../../plugins/nftables/testing/golden-scripts.js';
import { parseInstalledPinholes } from '../../plugins/nftables/pinholes.js';
import { pinholeRuleString } from '../../core/mapping/pinhole.js';
import { describeNetns, TestNamespace } from './netns.js';

/** The rules in effect after a change, sorted (nft lists elements in an order of its own). */
function after(installed: readonly RuleSpec[], remove: readonly RuleSpec[], add: readonly RuleSpec[]): string[] {
  const removed = new Set(remove.map(keyString));
  return [...installed.filter((r) => !removed.has(keyString(r))), ...add].map((r) => JSON.stringify(r)).sort();
}

describeNetns('nftables golden scripts against the installed nft', ['nft'], () => {
  let ns: TestNamespace;
  const nft = (args: string[], input?: string) => ns.exec('nft', args, { input });

  beforeAll(async () => {
    ns = await TestNamespace.create('nftgold');
  });
  afterAll(async () => {
    await ns?.destroy();
  });
  beforeEach(async () => {
    await nft(['flush', 'ruleset']);
  });

  /** The admin's table (when the settings jump from it), then upnpd's init script. */
  async function initialise(settings: NftablesSettings): Promise<void> {
    if (settings.forwardJump) {
      const { family, table, chain } = settings.forwardJump;
      await nft(['-f', '-'], `table ${family} ${table} {\n\tchain ${chain} {\n\t\ttype filter hook forward priority filter; policy drop;\n\t}\n}\n`);
    }
    await nft(['-f', '-'], buildInitScript(settings));
  }

  for (const golden of GOLDEN_CHANGES) {
    it(`${golden.name}: nft -c accepts it, and applying it gives the expected mappings and accept set`, async () => {
      const { settings, installed, changes } = golden;
      await initialise(settings);
      if (installed.length > 0) await nft(['-f', '-'], buildChangeScript({ remove: [], add: installed }, settings));

      await nft(['-c', '-f', '-'], golden.script);
      await nft(['-f', '-'], golden.script);

      const listed = parseInstalledRules(await nft(['-j', 'list', 'table', settings.family, settings.table]), settings);
      expect(listed.map((r) => JSON.stringify(r)).sort()).toEqual(after(installed, changes.remove, changes.add));
      if (!settings.forwardJump) return;
      const acceptSet = await nft(['list', 'set', settings.forwardJump.family, settings.forwardJump.table, `${settings.table}-accept`]);
      for (const rule of listed) expect(acceptSet).toContain(`${rule.internalClient} . ${rule.protocol.toLowerCase()} . ${rule.internalPort}`);
      const elements = acceptSet.match(/\d+\.\d+\.\d+\.\d+ \. (tcp|udp) \. \d+/g) ?? [];
      expect(elements.length).toBe(new Set(listed.map((r) => `${r.internalClient}/${r.protocol}/${r.internalPort}`)).size);
    });
  }

  for (const golden of GOLDEN_PINHOLE_CHANGES) {
    it(`${golden.name}: nft -c accepts it, and applying it leaves the expected pinholes in the admin's table`, async () => {
      const { settings, installed, changes } = golden;
      await initialise(settings);
      if (installed.length > 0) await nft(['-f', '-'], buildChangeScript({ remove: [], add: [], pinholes: { remove: [], add: installed } }, settings));

      await nft(['-c', '-f', '-'], golden.script);
      await nft(['-f', '-'], golden.script);

      const { family, table } = settings.forwardJump!;
      const listing = JSON.parse(await nft(['-j', 'list', 'table', family, table])) as { nftables: Array<Record<string, unknown>> };
      const pinholes = parseInstalledPinholes(listing.nftables, pinholePlace(settings)!).map((p) => pinholeRuleString(p.rule));
      const closed = new Set((changes.pinholes?.remove ?? []).map(pinholeRuleString));
      const expected = [...installed.map(pinholeRuleString).filter((r) => !closed.has(r)), ...(changes.pinholes?.add ?? []).map(pinholeRuleString)];
      expect(pinholes.sort()).toEqual(expected.sort());
    });
  }

  it('nft -c rejects a change that deletes an element that is not there (the check is real)', async () => {
    await initialise(GOLDEN_CHANGES[0]!.settings);
    await expect(nft(['-c', '-f', '-'], GOLDEN_CHANGES[2]!.script)).rejects.toThrow(/No such file or directory/);
  });
});
