import 'reflect-metadata';
import { describeBackendConformance } from '../../core/testing/index.js';
import { silentLogger } from '../../core/logger.js';
import { IptablesBackend } from '../../plugins/iptables/backend.js';
import { iptablesOptionsSchema, ip6ProgramsOf, programsOf } from '../../plugins/iptables/rules.js';
import { describeNetns, TestNamespace } from './netns.js';

// The backend contract, for both flavours, each test in a fresh namespace of its own.
for (const flavour of ['iptables', 'iptables-legacy'] as const) {
  const { iptables, restore, save } = programsOf(flavour);
  describeNetns(`${flavour} backend`, [iptables, restore, save], () => {
    describeBackendConformance(flavour, async () => {
      const ns = await TestNamespace.create('iptconf');
      const options = iptablesOptionsSchema.parse({ flavour, wanInterface: 'wan0' });
      return { backend: new IptablesBackend(options, ns.runner(), silentLogger, undefined), teardown: () => ns.destroy() };
    });
  });

  const ip6 = ip6ProgramsOf(flavour);
  describeNetns(`${flavour} backend with IPv6 pinholes`, [iptables, restore, save, ip6.iptables, ip6.restore, ip6.save], () => {
    describeBackendConformance(`${flavour}, pinholes: true`, async () => {
      const ns = await TestNamespace.create('iptconf6');
      const options = iptablesOptionsSchema.parse({ flavour, wanInterface: 'wan0', pinholes: true });
      return { backend: new IptablesBackend(options, ns.runner(), silentLogger, undefined), teardown: () => ns.destroy() };
    });
  });
}
