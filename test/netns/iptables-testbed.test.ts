import { execa } from 'execa';
import { afterEach, expect, it, vi } from 'vitest';
import { describeNetns, TestNamespace } from './netns.js';
import { createTestbed, firewallSnapshot, type IptablesFlavour } from './topology.js';

// The testbed itself: what the iptables (and other) namespace tests build on.
describeNetns('namespace testbed', ['iptables-restore', 'iptables-save'], () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  const existing = async () => (await execa('ip', ['netns', 'list'])).stdout;

  it('removes every namespace it made when building fails half way', async () => {
    const create = vi.spyOn(TestNamespace, 'create');
    // The admin firewall is installed after all four namespaces exist: make that step fail.
    await expect(createTestbed({ adminFlavour: 'no-such-iptables' as IptablesFlavour })).rejects.toThrow(/no-such-iptables-restore/);
    const made = await Promise.all(create.mock.results.map((r) => r.value as Promise<TestNamespace>));
    expect(made).toHaveLength(4);
    const left = await existing();
    for (const ns of made) expect(left).not.toContain(ns.name);
  });

  it('installs the admin firewall with the FORWARD policy asked for, and destroy removes everything', async () => {
    const testbed = await createTestbed({ forwardPolicy: 'ACCEPT' });
    try {
      const rules = await firewallSnapshot(testbed.gateway);
      expect(rules).toContain(':FORWARD ACCEPT');
      expect(rules).toContain('-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT');
      expect(rules).toContain(`-A POSTROUTING -s ${testbed.addresses.lanSubnet} -o ${testbed.wanInterface} -j MASQUERADE`);
      expect(await testbed.gateway.exec('sysctl', ['-n', 'net.ipv4.ip_forward'])).toBe('1');
      expect(await testbed.gateway.exec('ip', ['-4', '-o', 'addr', 'show', 'dev', testbed.lanInterface])).toContain(`${testbed.addresses.gatewayLan}/24`);
    } finally {
      await testbed.destroy();
    }
    const left = await existing();
    for (const ns of [testbed.lan, testbed.lan2, testbed.gateway, testbed.wan]) expect(left).not.toContain(ns.name);
  });
});
