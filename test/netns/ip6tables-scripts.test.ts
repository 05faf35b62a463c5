import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { pinholeRuleString } from '../../core/mapping/pinhole.js';
import { buildPinholeResyncScript, parsePinholeSave } from '../../plugins/iptables/pinholes.js';
import { GOLDEN_IP6_CHANGES, GOLDEN_PINHOLE_OPTIONS as OPTIONS } from '../../plugins/iptables/testing/golden-pinholes.js';
import { describeNetns, TestNamespace } from './netns.js';

describeNetns('ip6tables golden pinhole scripts against the installed ip6tables-restore', ['ip6tables-restore', 'ip6tables-save'], () => {
  let ns: TestNamespace;
  const restore = (script: string, ...flags: string[]) => ns.exec('ip6tables-restore', ['--noflush', ...flags], { input: script });
  const saved = async () => parsePinholeSave(await ns.exec('ip6tables-save', ['-c', '-t', 'filter']), OPTIONS);

  beforeAll(async () => {
    ns = await TestNamespace.create('ip6gold');
  });
  afterAll(async () => {
    await ns?.destroy();
  });
  beforeEach(async () => {
    await ns.exec('ip6tables-restore', [], { input: '*filter\n:FORWARD DROP [0:0]\nCOMMIT\n' });
    await restore(buildPinholeResyncScript(await saved(), [], OPTIONS));
  });

  it('the init script made the chain and one jump', async () => {
    const state = await saved();
    expect([state.chainExists, state.jumped, state.stray]).toEqual([true, true, []]);
    // Run again (a restart): still one jump.
    await restore(buildPinholeResyncScript(state, [], OPTIONS));
    expect((await ns.exec('ip6tables-save', ['-t', 'filter'])).match(/pinholes jump/g)).toHaveLength(1);
  });

  it('each golden change passes ip6tables-restore --test and, applied, leaves exactly the expected pinholes', async () => {
    const [opening, closing] = GOLDEN_IP6_CHANGES;
    for (const golden of [opening!, closing!]) {
      await restore(golden.script, '--test');
      await restore(golden.script);
    }
    const left = (await saved()).installed.map((p) => pinholeRuleString(p.rule));
    expect(left).toEqual(opening!.changes.add.filter((r) => !closing!.changes.remove.includes(r)).map(pinholeRuleString));
  });

  it('--test rejects a malformed rule (the check is real); applying the deletion of a pinhole that is not there fails', async () => {
    await expect(restore(GOLDEN_IP6_CHANGES[0]!.script.replace('--dport 8080', '--dport 99999'), '--test')).rejects.toThrow();
    await expect(restore(GOLDEN_IP6_CHANGES[1]!.script)).rejects.toThrow();
  });
});
