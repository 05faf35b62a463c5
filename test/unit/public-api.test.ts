import type { DependencyContainer, InjectionToken } from 'tsyringe';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import {
  BackendError,
  CLOCK,
  COMMAND_RUNNER,
  CONFIG,
  HOOK_KINDS,
  LAN_ADDRESSES,
  LOGGER,
  MAPPINGS,
  NETWORK_INFO,
  PLUGIN_OPTIONS,
  UpnpError,
  UpnpErrorCode,
  UpnpdError,
  defineBackend,
  defineConfig,
  definePlugin,
  firewallPlugin,
  type BackendCapabilities,
  type BackendContext,
  type BackendSpec,
  type ChangeSet,
  type Clock,
  type CommandRunner,
  type ExternalAddressChangeEvent,
  type LanAddressChangeEvent,
  type Finding,
  type FirewallBackend,
  type IntegrityReport,
  type HookName,
  type Hooks,
  type InterfaceAddress,
  type Logger,
  type MappedEvent,
  type MappingKey,
  type MappingRequest,
  type MappingView,
  type NetworkInfo,
  type PinholeRule,
  type PinholeView,
  type Plugin,
  type PluginSpec,
  type PolicyContext,
  type PortMapping,
  type Protocol,
  type ResolvedConfig,
  type RuleSpec,
  type UnmappedEvent,
} from 'upnpd';
import { EMPTY_CHANGE_SET, assertValidRules, isValidRule, keyString, ruleOf, sameRule } from 'upnpd/backend';
import { describeBackendConformance, type BackendUnderTest } from 'upnpd/testing';

/*
 * What a plugin or backend author relies on, pinned: these are compile-time checks (`tsc --noEmit`
 * over test/, which `npm test` runs), plus a few runtime ones. A change that fails here breaks
 * third-party code written against 'upnpd', 'upnpd/backend' or 'upnpd/testing'.
 */

/** The smallest backend an author can write: exactly the six methods of the contract. */
class MinimalBackend implements FirewallBackend {
  probe(): Promise<BackendCapabilities> {
    return Promise.resolve({ dialect: 'minimal', remoteHost: false, details: {} });
  }
  async init(): Promise<void> {}
  async apply(_changes: ChangeSet): Promise<void> {}
  list(): Promise<RuleSpec[]> {
    return Promise.resolve([]);
  }
  async shutdown(): Promise<void> {}
  render(changes: ChangeSet, _installed: readonly RuleSpec[]): string {
    return `${changes.add.length} to add`;
  }
}

const rule: RuleSpec = { remoteHost: '', externalPort: 8080, protocol: 'TCP', internalClient: '192.168.1.10', internalPort: 80 };

describe('definePlugin', () => {
  const quotaOptions = z.object({ maxPerClient: z.number().int().default(16), label: z.string().transform((s) => s.length) }).strict();
  const quota = definePlugin({ name: 'quota', optionsSchema: quotaOptions, create: () => ({ name: 'quota' }) });

  it('returns a factory taking the schema input (optional) and giving a PluginSpec of the schema output', () => {
    expectTypeOf(quota).parameters.toEqualTypeOf<[options?: { maxPerClient?: number | undefined; label: string }]>();
    expectTypeOf(quota).returns.toEqualTypeOf<PluginSpec<{ maxPerClient: number; label: number }>>();
    const spec = quota({ label: 'abc' });
    expect(spec).toMatchObject({ kind: 'plugin', name: 'quota', options: { label: 'abc' } });
    expect(spec.optionsSchema?.parse(spec.options)).toEqual({ maxPerClient: 16, label: 3 });
    expect(quota().options).toEqual({});
  });

  it("gives a spec with kind 'plugin', a name, raw options, and a create taking a tsyringe container", () => {
    expectTypeOf<PluginSpec['kind']>().toEqualTypeOf<'plugin'>();
    expectTypeOf<PluginSpec['name']>().toEqualTypeOf<string>();
    expectTypeOf<PluginSpec['options']>().toEqualTypeOf<unknown>();
    expectTypeOf<PluginSpec<{ n: number }>['optionsSchema']>().toEqualTypeOf<z.ZodType<{ n: number }> | undefined>();
    expectTypeOf<PluginSpec['create']>().toEqualTypeOf<(container: DependencyContainer) => Plugin>();
  });

  it('its specs are accepted by defineConfig, next to a backend and falsy entries', () => {
    const backend = defineBackend({ name: 'minimal', create: () => new MinimalBackend() });
    expectTypeOf(defineConfig).toBeCallableWith({ plugins: [quota({ label: 'x' }), backend(), false, null, undefined] });
  });
});

describe('defineBackend', () => {
  it('with an optionsSchema: create gets the schema output, the factory takes the schema input', () => {
    const options = z.object({ table: z.string().default('upnpd'), retries: z.string().transform(Number) }).strict();
    const factory = defineBackend({
      name: 'typed',
      optionsSchema: options,
      create: (context) => {
        expectTypeOf(context).toEqualTypeOf<BackendContext<{ table: string; retries: number }>>();
        expectTypeOf(context.options).toEqualTypeOf<{ table: string; retries: number }>();
        return new MinimalBackend();
      },
    });
    expectTypeOf(factory).parameters.toEqualTypeOf<[options?: { table?: string | undefined; retries: string }]>();
    expectTypeOf(factory).returns.toEqualTypeOf<BackendSpec<{ table: string; retries: number }>>();
    expect(factory({ retries: '3' })).toMatchObject({ kind: 'backend', name: 'typed', options: { retries: '3' } });
  });

  it('without an optionsSchema: the factory may be called with no options and gives a BackendSpec', () => {
    const factory = defineBackend({ name: 'plain', create: () => new MinimalBackend() });
    expectTypeOf(factory).toBeCallableWith();
    expectTypeOf(factory).returns.toExtend<BackendSpec>();
    const spec = factory();
    expect(spec).toMatchObject({ kind: 'backend', name: 'plain', options: {}, optionsSchema: undefined });
  });

  it("gives a spec with kind 'backend' and a create taking a BackendContext", () => {
    expectTypeOf<BackendSpec['kind']>().toEqualTypeOf<'backend'>();
    expectTypeOf<BackendSpec['name']>().toEqualTypeOf<string>();
    expectTypeOf<BackendSpec['options']>().toEqualTypeOf<unknown>();
    expectTypeOf<BackendSpec<{ n: number }>['create']>().toEqualTypeOf<(context: BackendContext<{ n: number }>) => FirewallBackend>();
  });
});

describe('BackendContext', () => {
  it("holds the parsed options and the daemon's services, typed", () => {
    type Context = BackendContext<{ path: string }>;
    expectTypeOf<Context['options']>().toEqualTypeOf<{ path: string }>();
    expectTypeOf<Context['config']>().toEqualTypeOf<ResolvedConfig>();
    expectTypeOf<Context['logger']>().toEqualTypeOf<Logger>();
    expectTypeOf<Context['commands']>().toEqualTypeOf<CommandRunner>();
    expectTypeOf<Context['container']>().toEqualTypeOf<DependencyContainer>();
    expectTypeOf<Context['build']>().toEqualTypeOf<(spec: BackendSpec) => FirewallBackend>();
    expectTypeOf<BackendContext['options']>().toEqualTypeOf<unknown>();
  });

  it('gives the config fields a backend reads', () => {
    expectTypeOf<ResolvedConfig>().toHaveProperty('wan').toEqualTypeOf<string | undefined>();
    expectTypeOf<ResolvedConfig>().toHaveProperty('dryRun').toEqualTypeOf<boolean>();
    expectTypeOf<ResolvedConfig>().toHaveProperty('keepRulesOnShutdown').toEqualTypeOf<boolean>();
  });
});

describe('FirewallBackend', () => {
  it('is six methods, with these signatures (a backend implementing just them compiles), three optional ones for reconciliation, one for diagnosis and optional IPv6 pinholes', () => {
    expectTypeOf<keyof FirewallBackend>().toEqualTypeOf<
      'probe' | 'init' | 'apply' | 'list' | 'shutdown' | 'render' | 'check' | 'resync' | 'watch' | 'diagnose' | 'pinholes'
    >();
    expectTypeOf<FirewallBackend['check']>().toEqualTypeOf<
      ((expected: readonly RuleSpec[], pinholes?: readonly PinholeRule[]) => Promise<IntegrityReport>) | undefined
    >();
    expectTypeOf<FirewallBackend['resync']>().toEqualTypeOf<((rules: readonly RuleSpec[], pinholes?: readonly PinholeRule[]) => Promise<void>) | undefined>();
    expectTypeOf<FirewallBackend['pinholes']>().toEqualTypeOf<{ list(): Promise<PinholeRule[]>; packets(rule: PinholeRule): Promise<number> } | undefined>();
    expectTypeOf<FirewallBackend['watch']>().toEqualTypeOf<((onChange: () => void) => () => void) | undefined>();
    expectTypeOf<FirewallBackend['diagnose']>().toEqualTypeOf<(() => Promise<readonly Finding[]>) | undefined>();
    expectTypeOf<FirewallBackend['probe']>().toEqualTypeOf<() => Promise<BackendCapabilities>>();
    expectTypeOf<FirewallBackend['init']>().toEqualTypeOf<() => Promise<void>>();
    expectTypeOf<FirewallBackend['apply']>().toEqualTypeOf<(changes: ChangeSet) => Promise<void>>();
    expectTypeOf<FirewallBackend['list']>().toEqualTypeOf<() => Promise<RuleSpec[]>>();
    expectTypeOf<FirewallBackend['shutdown']>().toEqualTypeOf<() => Promise<void>>();
    expectTypeOf<FirewallBackend['render']>().toEqualTypeOf<(changes: ChangeSet, installed: readonly RuleSpec[]) => string>();
    expectTypeOf(new MinimalBackend()).toExtend<FirewallBackend>();
  });

  it('reports its capabilities as a dialect, remote-host support and free-form details', () => {
    expectTypeOf<BackendCapabilities>().toEqualTypeOf<{
      readonly dialect: string;
      readonly remoteHost: boolean;
      readonly pinholes?: boolean;
      readonly details: Readonly<Record<string, string>>;
    }>();
  });

  it('is put in the firewall slot by firewallPlugin', () => {
    expectTypeOf(firewallPlugin).toEqualTypeOf<(name: string, backend: FirewallBackend, options: { readonly keepRulesOnShutdown: boolean }) => Plugin>();
    const backend = new MinimalBackend();
    const plugin = firewallPlugin('minimal', backend, { keepRulesOnShutdown: false });
    expect(plugin.name).toBe('minimal');
    expect(plugin.firewall).toBe(backend);
  });
});

describe('Plugin and its hooks', () => {
  it('is a name, an optional order, optional hooks and firewall slot, and optional provision/cleanup', () => {
    expectTypeOf({ name: 'bare' }).toExtend<Plugin>();
    expectTypeOf<Plugin['name']>().toEqualTypeOf<string>();
    expectTypeOf<Plugin['order']>().toEqualTypeOf<'pre' | 'post' | undefined>();
    expectTypeOf<Plugin['hooks']>().toEqualTypeOf<Partial<Hooks> | undefined>();
    expectTypeOf<Plugin['firewall']>().toEqualTypeOf<FirewallBackend | undefined>();
    expectTypeOf<Plugin['provision']>().toEqualTypeOf<(() => Promise<void> | void) | undefined>();
    expectTypeOf<Plugin['cleanup']>().toEqualTypeOf<(() => Promise<void> | void) | undefined>();
  });

  it('has these hooks, and no others', () => {
    expectTypeOf<HookName>().toEqualTypeOf<
      | 'beforeMap'
      | 'beforeUnmap'
      | 'beforePinhole'
      | 'onPinhole'
      | 'onMapped'
      | 'onUnmapped'
      | 'onExpire'
      | 'onExternalAddressChange'
      | 'onLanAddressChange'
      | 'onRepaired'
    >();
  });

  it('sequential hooks: beforeMap may return an adjusted request or nothing, possibly async; beforeUnmap may only veto', () => {
    expectTypeOf<Hooks['beforeMap']>().parameters.toEqualTypeOf<[request: MappingRequest, context: PolicyContext]>();
    expectTypeOf<Hooks['beforeMap']>().returns.toEqualTypeOf<MappingRequest | void | Promise<MappingRequest | void>>();
    expectTypeOf<Hooks['beforeUnmap']>().parameters.toEqualTypeOf<[mapping: PortMapping, context: PolicyContext]>();
    expectTypeOf<Hooks['beforeUnmap']>().returns.toEqualTypeOf<void | Promise<void>>();
    expectTypeOf<PolicyContext>().toEqualTypeOf<{
      readonly requester: { readonly address: string; readonly via: string };
      readonly existing: PortMapping | undefined;
      readonly mappings: MappingView;
      readonly pinholes?: PinholeView;
    }>();
    // Both ways compile: a synchronous veto-only handler and an async adjusting one.
    const hooks: Plugin['hooks'] = {
      beforeMap: () => {},
      beforeUnmap: async () => {},
    };
    const adjusting: Plugin['hooks'] = { beforeMap: (request) => Promise.resolve({ ...request, leaseSeconds: 60 }) };
    expect([hooks, adjusting]).toHaveLength(2);
  });

  it('parallel hooks are notifications with these events', () => {
    expectTypeOf<Hooks['onMapped']>().toEqualTypeOf<(event: MappedEvent) => void | Promise<void>>();
    expectTypeOf<Hooks['onUnmapped']>().toEqualTypeOf<(event: UnmappedEvent) => void | Promise<void>>();
    expectTypeOf<Hooks['onExpire']>().toEqualTypeOf<(event: UnmappedEvent) => void | Promise<void>>();
    expectTypeOf<Hooks['onExternalAddressChange']>().toEqualTypeOf<(event: ExternalAddressChangeEvent) => void | Promise<void>>();
    expectTypeOf<MappedEvent>().toHaveProperty('mapping').toEqualTypeOf<PortMapping>();
    expectTypeOf<MappedEvent>().toHaveProperty('previous').toEqualTypeOf<PortMapping | undefined>();
    expectTypeOf<UnmappedEvent>().toHaveProperty('reason').toEqualTypeOf<'deleted' | 'expired' | 'shutdown'>();
    expectTypeOf<UnmappedEvent>().toHaveProperty('requester').toEqualTypeOf<{ readonly address: string; readonly via: string } | null>();
    expectTypeOf<ExternalAddressChangeEvent>().toEqualTypeOf<{ readonly previous: string; readonly current: string }>();
    expectTypeOf<Hooks['onLanAddressChange']>().toEqualTypeOf<(event: LanAddressChangeEvent) => void | Promise<void>>();
    expectTypeOf<LanAddressChangeEvent>().toEqualTypeOf<{ readonly previous: readonly InterfaceAddress[]; readonly current: readonly InterfaceAddress[] }>();
  });

  it('HOOK_KINDS gives every hook its kind', () => {
    expectTypeOf(HOOK_KINDS).toEqualTypeOf<{
      readonly beforeMap: 'sequential';
      readonly beforeUnmap: 'sequential';
      readonly beforePinhole: 'sequential';
      readonly onPinhole: 'parallel';
      readonly onMapped: 'parallel';
      readonly onUnmapped: 'parallel';
      readonly onExpire: 'parallel';
      readonly onExternalAddressChange: 'parallel';
      readonly onLanAddressChange: 'parallel';
      readonly onRepaired: 'parallel';
    }>();
    expect(HOOK_KINDS).toEqual({
      beforeMap: 'sequential',
      beforeUnmap: 'sequential',
      beforePinhole: 'sequential',
      onPinhole: 'parallel',
      onMapped: 'parallel',
      onUnmapped: 'parallel',
      onExpire: 'parallel',
      onExternalAddressChange: 'parallel',
      onLanAddressChange: 'parallel',
      onRepaired: 'parallel',
    });
  });
});

describe('injection tokens', () => {
  it('carry the type of what they inject', () => {
    expectTypeOf(LOGGER).toEqualTypeOf<InjectionToken<Logger>>();
    expectTypeOf(CONFIG).toEqualTypeOf<InjectionToken<ResolvedConfig>>();
    expectTypeOf(CLOCK).toEqualTypeOf<InjectionToken<Clock>>();
    expectTypeOf(COMMAND_RUNNER).toEqualTypeOf<InjectionToken<CommandRunner>>();
    expectTypeOf(NETWORK_INFO).toEqualTypeOf<InjectionToken<NetworkInfo>>();
    expectTypeOf(LAN_ADDRESSES).toEqualTypeOf<InjectionToken<readonly InterfaceAddress[]>>();
    expectTypeOf(MAPPINGS).toEqualTypeOf<InjectionToken<MappingView>>();
    expectTypeOf(PLUGIN_OPTIONS).toEqualTypeOf<InjectionToken<unknown>>();
    for (const token of [LOGGER, CONFIG, CLOCK, COMMAND_RUNNER, NETWORK_INFO, LAN_ADDRESSES, MAPPINGS, PLUGIN_OPTIONS]) expect(typeof token).toBe('symbol');
  });

  it('MAPPINGS is a read-only view: it reads, it cannot change the table', () => {
    expectTypeOf<keyof MappingView>().toEqualTypeOf<'get' | 'size' | 'values' | 'heldBy' | 'ofClient'>();
    expectTypeOf<MappingView['ofClient']>().toEqualTypeOf<(internalClient: string) => Iterable<PortMapping>>();
    expectTypeOf<MappingView['get']>().toEqualTypeOf<(key: MappingKey) => PortMapping | undefined>();
    expectTypeOf<MappingView['heldBy']>().toEqualTypeOf<(address: string) => number>();
    expectTypeOf<MappingView['values']>().toEqualTypeOf<() => Iterable<PortMapping>>();
    expectTypeOf<MappingView>().toHaveProperty('size').toEqualTypeOf<number>();
    expectTypeOf<MappingView>().not.toHaveProperty('add');
    expectTypeOf<MappingView>().not.toHaveProperty('delete');
    expectTypeOf<MappingView>().not.toHaveProperty('removeAll');
    expectTypeOf<MappingView>().not.toHaveProperty('close');
  });
});

describe('errors', () => {
  it('UpnpError takes a UpnpErrorCode, an optional detail and cause, and keeps the code', () => {
    expectTypeOf(UpnpError).constructorParameters.toEqualTypeOf<[upnpCode: UpnpErrorCode, detail?: string, options?: { cause?: unknown }]>();
    expectTypeOf<UpnpError['upnpCode']>().toEqualTypeOf<UpnpErrorCode>();
    expectTypeOf(UpnpErrorCode.NoPortMapsAvailable).toEqualTypeOf<728>();
    expectTypeOf<718>().toExtend<UpnpErrorCode>();
    expectTypeOf<UpnpErrorCode>().toExtend<number>();
    const error = new UpnpError(UpnpErrorCode.NoPortMapsAvailable, 'quota reached');
    expect(error).toBeInstanceOf(UpnpdError);
    expect(error).toMatchObject({
      upnpCode: 728,
      code: 'UPNPD_ERR_UPNP_728',
      description: 'NoPortMapsAvailable',
      message: 'NoPortMapsAvailable: quota reached',
    });
  });

  it('BackendError takes a message and an optional cause', () => {
    expectTypeOf(BackendError).constructorParameters.toEqualTypeOf<[message: string, options?: { cause?: unknown }]>();
    const cause = new Error('exit 1');
    const error = new BackendError('mine: apply failed', { cause });
    expect(error).toBeInstanceOf(UpnpdError);
    expect(error).toMatchObject({ code: 'UPNPD_ERR_BACKEND', message: 'mine: apply failed', cause });
  });
});

describe('rules as data', () => {
  it('RuleSpec, ChangeSet and the mapping types have these fields', () => {
    expectTypeOf<Protocol>().toEqualTypeOf<'TCP' | 'UDP'>();
    expectTypeOf<RuleSpec>().toEqualTypeOf<{
      readonly remoteHost: string;
      readonly externalPort: number;
      readonly protocol: Protocol;
      readonly internalClient: string;
      readonly internalPort: number;
    }>();
    expectTypeOf<ChangeSet>().toEqualTypeOf<{
      readonly remove: readonly RuleSpec[];
      readonly add: readonly RuleSpec[];
      readonly pinholes?: { readonly remove: readonly PinholeRule[]; readonly add: readonly PinholeRule[] };
    }>();
    expectTypeOf<MappingKey>().toEqualTypeOf<{ readonly remoteHost: string; readonly externalPort: number; readonly protocol: Protocol }>();
    expectTypeOf<MappingRequest>().toExtend<RuleSpec>();
    expectTypeOf<MappingRequest>().toHaveProperty('enabled').toEqualTypeOf<boolean>();
    expectTypeOf<MappingRequest>().toHaveProperty('description').toEqualTypeOf<string>();
    expectTypeOf<MappingRequest>().toHaveProperty('leaseSeconds').toEqualTypeOf<number>();
    expectTypeOf<PortMapping>().toHaveProperty('expiresAt').toEqualTypeOf<number | null>();
    expectTypeOf<PortMapping>().toExtend<RuleSpec>();
  });

  it("'upnpd/backend' compares, copies and checks them", () => {
    expectTypeOf(keyString).toEqualTypeOf<(k: MappingKey) => string>();
    expectTypeOf(ruleOf).toEqualTypeOf<(m: RuleSpec) => RuleSpec>();
    expectTypeOf(sameRule).toEqualTypeOf<(a: RuleSpec, b: RuleSpec) => boolean>();
    expectTypeOf(isValidRule).toEqualTypeOf<(rule: RuleSpec) => boolean>();
    expectTypeOf(assertValidRules).toEqualTypeOf<(backend: string, rules: Iterable<RuleSpec>) => void>();
    expectTypeOf(EMPTY_CHANGE_SET).toEqualTypeOf<ChangeSet>();
    const mapping = { ...rule, enabled: true, description: 'x', leaseSeconds: 0 };
    expect(ruleOf(mapping)).toEqual(rule);
    expect(sameRule(ruleOf(mapping), rule)).toBe(true);
    expect(keyString(rule)).toBe('TCP/8080/');
    expect(() => assertValidRules('mine', [{ ...rule, internalClient: '1.2.3.4; rm -rf /' }])).toThrow(BackendError);
  });
});

describe("'upnpd/testing'", () => {
  it('describeBackendConformance takes a name and a setup giving a backend and its teardown', () => {
    expectTypeOf(describeBackendConformance).toEqualTypeOf<(name: string, setup: () => Promise<BackendUnderTest>) => void>();
    expectTypeOf<BackendUnderTest>().toEqualTypeOf<{ readonly backend: FirewallBackend; teardown(): Promise<void> }>();
  });
});
