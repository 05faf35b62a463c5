import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { pinholeRuleString, type PinholeRule } from '../mapping/pinhole.js';
import type { ChangeSet, RuleSpec } from '../mapping/types.js';
import type { FirewallBackend } from '../plugins/types.js';

export interface BackendUnderTest {
  readonly backend: FirewallBackend;
  /** Removes whatever the test environment made (namespaces, temp files). Runs after every test. */
  teardown(): Promise<void>;
}

/** Addresses used by the suite; a backend's environment may need to route them (it needs not to). */
export const CONFORMANCE_CLIENT = '192.168.77.10';
export const CONFORMANCE_OTHER_CLIENT = '192.168.77.11';
export const CONFORMANCE_REMOTE_HOST = '203.0.113.9';

function rule(externalPort: number, overrides: Partial<RuleSpec> = {}): RuleSpec {
  return {
    remoteHost: '',
    externalPort,
    protocol: 'TCP',
    internalClient: CONFORMANCE_CLIENT,
    internalPort: externalPort,
    ...overrides,
  };
}

/** IPv6 pinhole targets of the suite (documentation prefix). */
export const CONFORMANCE_PINHOLE_CLIENT = '2001:db8:77::10';
export const CONFORMANCE_PINHOLE_REMOTE_HOST = '2001:db8:ff::9';

function pinhole(internalPort: number, overrides: Partial<PinholeRule> = {}): PinholeRule {
  return { remoteHost: '', remotePort: 0, internalClient: CONFORMANCE_PINHOLE_CLIENT, internalPort, protocol: 'TCP', ...overrides };
}

function pinholeIds(rules: readonly PinholeRule[]): string[] {
  return rules.map(pinholeRuleString).sort();
}

function sorted(rules: readonly RuleSpec[]): RuleSpec[] {
  const key = (r: RuleSpec) => `${r.protocol}/${String(r.externalPort).padStart(5, '0')}/${r.remoteHost}/${r.internalClient}/${r.internalPort}`;
  return [...rules].map((r) => ({ ...r })).sort((a, b) => key(a).localeCompare(key(b)));
}

/**
 * The contract every firewall backend must meet, as a vitest suite. A backend author calls it
 * from a test file with a setup that gives a fresh backend (and, for real backends, a fresh
 * network namespace) for every test:
 *
 *   describeBackendConformance('my backend', async () => ({ backend: new MyBackend(...), teardown }));
 *
 * The contract: init is idempotent and starts empty; apply is atomic (removals, then additions,
 * all or nothing); removing a rule that is not installed is an error; list reads back exactly
 * what is installed; shutdown removes everything and is idempotent; init works again afterwards.
 * A backend with IPv6 pinholes (a `pinholes` member, `pinholes: true` from probe) meets the same
 * contract for them, in the same change sets; one without says so and is never sent any.
 */
export function describeBackendConformance(name: string, setup: () => Promise<BackendUnderTest>): void {
  describe(`backend conformance: ${name}`, () => {
    let current: BackendUnderTest | undefined;
    let backend: FirewallBackend;

    beforeEach(async () => {
      current = await setup();
      backend = current.backend;
      await backend.probe();
      await backend.init();
    });

    afterEach(async () => {
      try {
        await backend?.shutdown();
      } finally {
        await current?.teardown();
        current = undefined;
      }
    });

    it('probe names its rule dialect', async () => {
      const capabilities = await backend.probe();
      expect(capabilities.dialect).toMatch(/\S/);
    });

    it('starts empty, and init is idempotent', async () => {
      expect(await backend.list()).toEqual([]);
      await backend.init();
      expect(await backend.list()).toEqual([]);
    });

    it('installs added rules and reads them back exactly', async () => {
      const added = [rule(4000), rule(4000, { protocol: 'UDP' }), rule(5000, { internalPort: 6000, internalClient: CONFORMANCE_OTHER_CLIENT })];
      await backend.apply({ remove: [], add: added });
      expect(sorted(await backend.list())).toEqual(sorted(added));
    });

    it('restricts a rule to a remote host when the backend supports it', async () => {
      const capabilities = await backend.probe();
      const restricted = rule(4100, { remoteHost: CONFORMANCE_REMOTE_HOST });
      const apply = backend.apply({ remove: [], add: [restricted, rule(4100)] });
      if (!capabilities.remoteHost) {
        await expect(apply).rejects.toThrow();
        return;
      }
      await apply;
      expect(sorted(await backend.list())).toEqual(sorted([restricted, rule(4100)]));
    });

    it('replaces a rule (remove and add of the same key) in one change set', async () => {
      await backend.apply({ remove: [], add: [rule(4200)] });
      const replacement = rule(4200, { internalClient: CONFORMANCE_OTHER_CLIENT, internalPort: 4201 });
      await backend.apply({ remove: [rule(4200)], add: [replacement] });
      expect(await backend.list()).toEqual([replacement]);
    });

    it('removes rules', async () => {
      await backend.apply({ remove: [], add: [rule(4300), rule(4301)] });
      await backend.apply({ remove: [rule(4300)], add: [] });
      expect(await backend.list()).toEqual([rule(4301)]);
    });

    it('applies a large change set in one call', async () => {
      const many = Array.from({ length: 300 }, (_, i) => rule(10000 + i, { protocol: i % 2 ? 'UDP' : 'TCP' }));
      await backend.apply({ remove: [], add: many });
      expect(sorted(await backend.list())).toEqual(sorted(many));
      await backend.apply({ remove: many, add: [] });
      expect(await backend.list()).toEqual([]);
    });

    it('changes nothing when a change set fails (removing a rule that is not installed)', async () => {
      await backend.apply({ remove: [], add: [rule(4400)] });
      const failing: ChangeSet = { remove: [rule(4400), rule(4999)], add: [rule(4401)] };
      await expect(backend.apply(failing)).rejects.toThrow();
      expect(await backend.list()).toEqual([rule(4400)]);
    });

    it('declares IPv6 pinholes in probe exactly when it has them', async () => {
      const capabilities = await backend.probe();
      expect(capabilities.pinholes === true).toBe(backend.pinholes !== undefined);
    });

    it('IPv6 pinholes (if it has them): opened in the same change set as mappings, listed back exactly, closed', async () => {
      if (!backend.pinholes) return;
      const opened = [
        pinhole(8080),
        pinhole(5060, { protocol: 'UDP' }),
        pinhole(22, { remoteHost: CONFORMANCE_PINHOLE_REMOTE_HOST }),
        pinhole(4500, { remotePort: 4500 }),
      ];
      await backend.apply({ remove: [], add: [rule(4600)], pinholes: { remove: [], add: opened } });
      expect(pinholeIds(await backend.pinholes.list())).toEqual(pinholeIds(opened));
      expect(await backend.list()).toEqual([rule(4600)]);
      expect(await backend.pinholes.packets(opened[0]!)).toBe(0);
      await backend.apply({ remove: [], add: [], pinholes: { remove: opened.slice(1), add: [] } });
      expect(pinholeIds(await backend.pinholes.list())).toEqual(pinholeIds(opened.slice(0, 1)));
    });

    it('IPv6 pinholes (if it has them): a change set closing a pinhole that is not open fails and changes nothing', async () => {
      if (!backend.pinholes) return;
      await backend.apply({ remove: [], add: [rule(4700)], pinholes: { remove: [], add: [pinhole(7000)] } });
      const failing: ChangeSet = { remove: [], add: [rule(4701)], pinholes: { remove: [pinhole(7999)], add: [pinhole(7001)] } };
      await expect(backend.apply(failing)).rejects.toThrow();
      expect(pinholeIds(await backend.pinholes.list())).toEqual(pinholeIds([pinhole(7000)]));
      expect(await backend.list()).toEqual([rule(4700)]);
    });

    it('IPv6 pinholes (if it has them): shutdown closes them and init starts without any', async () => {
      if (!backend.pinholes) return;
      await backend.apply({ remove: [], add: [], pinholes: { remove: [], add: [pinhole(9000)] } });
      await backend.shutdown();
      await backend.init();
      expect(await backend.pinholes.list()).toEqual([]);
    });

    it('shutdown removes every rule, is idempotent, and init works again afterwards', async () => {
      await backend.apply({ remove: [], add: [rule(4500), rule(4501, { protocol: 'UDP' })] });
      await backend.shutdown();
      await backend.shutdown();
      await backend.init();
      expect(await backend.list()).toEqual([]);
    });
  });
}
