import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ChangeSet, RuleSpec } from '../../core/mapping/types.js';
import {
  buildInitScript,
  buildRestoreScript,
  buildShutdownScript,
  iptablesOptionsSchema,
  parseSave,
  programsOf,
  type IptablesRuleOptions,
} from '../../plugins/iptables/rules.js';
import { describeNetns, TestNamespace } from './netns.js';
import type { IptablesFlavour } from './topology.js';

const rule = (externalPort: number, overrides: Partial<RuleSpec> = {}): RuleSpec => ({
  remoteHost: '',
  externalPort,
  protocol: 'TCP',
  internalClient: '192.168.77.10',
  internalPort: externalPort,
  ...overrides,
});

const INSTALLED = [rule(80), rule(53, { protocol: 'UDP', remoteHost: '203.0.113.3', internalPort: 5353 })];

/** The change sets of the golden unit tests, to be run after INSTALLED is in place. */
const CHANGE_SETS: Record<string, ChangeSet> = {
  add: { remove: [], add: [rule(8080, { internalPort: 80 })] },
  delete: { remove: [INSTALLED[0]!], add: [] },
  replace: { remove: [INSTALLED[0]!], add: [rule(80, { internalClient: '192.168.77.11' })] },
  'remote host': { remove: [INSTALLED[1]!], add: [rule(53, { protocol: 'UDP', remoteHost: '198.51.100.1' })] },
  'mixed batch': { remove: INSTALLED, add: [rule(1), rule(65535, { protocol: 'UDP' }), rule(80, { remoteHost: '203.0.113.3' })] },
};

const VARIANTS: Record<string, Partial<IptablesRuleOptions>> = {
  'own chains': {},
  'built-in chains': { forwardChain: 'FORWARD', preroutingChain: 'PREROUTING' },
  'no forward rules': { insertForwardRules: false },
};

for (const flavour of ['iptables', 'iptables-legacy'] as const satisfies readonly IptablesFlavour[]) {
  const programs = programsOf(flavour);
  describeNetns(`generated scripts against the real ${programs.restore}`, [programs.restore, programs.save], () => {
    let ns: TestNamespace;
    const restore = (script: string, ...flags: string[]) => ns.runner().run(programs.restore, ['--noflush', ...flags], { input: script });
    const saved = async () => parseSave(await ns.exec(programs.save, []));

    beforeAll(async () => {
      ns = await TestNamespace.create('iptrules');
    });
    afterAll(async () => {
      await ns?.destroy();
    });

    it('refuses a broken script (the check can fail)', async () => {
      const broken = buildRestoreScript(
        { remove: [], add: [rule(80)] },
        { ...iptablesOptionsSchema.parse({}), wanInterface: 'a-name-longer-than-15', flavour },
      ).script;
      expect((await restore(broken, '--test')).exitCode).not.toBe(0);
    });

    for (const [variant, overrides] of Object.entries(VARIANTS)) {
      it(`accepts init, every change set and shutdown (${variant}), and saves rules exactly as written`, async () => {
        const options: IptablesRuleOptions = { ...iptablesOptionsSchema.parse({}), wanInterface: 'wan0', flavour, ...overrides };
        const init = buildInitScript(await saved(), options);
        expect(await restore(init, '--test')).toMatchObject({ exitCode: 0 });
        expect(await restore(init)).toMatchObject({ exitCode: 0 });

        const { script: install, shards } = buildRestoreScript({ remove: [], add: INSTALLED }, options);
        expect(await restore(install)).toMatchObject({ exitCode: 0 });
        // iptables-save prints our rules exactly as we wrote them (inserted ones as -A): what -D and list() rely on.
        const written = install
          .split('\n')
          .filter((l) => /^-[AI] UPNPD-\S+ .* -j (DNAT|ACCEPT)\b/.test(l))
          .map((l) => l.replace(/^-I /, '-A '))
          .sort();
        const ours = (await ns.exec(programs.save, []))
          .split('\n')
          .filter((l) => /^-A UPNPD-\S+ .* -j (DNAT|ACCEPT)\b/.test(l))
          .sort();
        expect(ours).toEqual(written);

        for (const [name, changes] of Object.entries(CHANGE_SETS)) {
          const result = await restore(buildRestoreScript(changes, options, shards).script, '--test');
          expect({ name, ...result }).toMatchObject({ name, exitCode: 0 });
        }

        const shutdown = buildShutdownScript(await saved(), options);
        expect(await restore(shutdown, '--test')).toMatchObject({ exitCode: 0 });
        expect(await restore(shutdown)).toMatchObject({ exitCode: 0 });
        expect(await ns.exec(programs.save, [])).not.toMatch(/upnpd|UPNPD/);
      });
    }
  });
}
