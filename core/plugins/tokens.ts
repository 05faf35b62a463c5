import type { InjectionToken } from 'tsyringe';
import type { Clock } from '../clock.js';
import type { Logger } from '../logger.js';
import type { CommandRunner } from '../command-runner.js';
import type { ResolvedConfig } from '../config/schema.js';
import type { MappingView } from '../mapping/types.js';
import type { InterfaceAddress, NetworkInfo } from '../net/network-info.js';
import type { RefusalRegistry } from './refusals.js';

/**
 * Typed tsyringe tokens. Every constructor parameter of an injectable class carries
 * `@inject(TOKEN)`: upnpd never relies on emitted decorator metadata.
 */
export const LOGGER: InjectionToken<Logger> = Symbol('upnpd.Logger');
export const CONFIG: InjectionToken<ResolvedConfig> = Symbol('upnpd.Config');
export const CLOCK: InjectionToken<Clock> = Symbol('upnpd.Clock');
export const COMMAND_RUNNER: InjectionToken<CommandRunner> = Symbol('upnpd.CommandRunner');
export const NETWORK_INFO: InjectionToken<NetworkInfo> = Symbol('upnpd.NetworkInfo');
/**
 * The LAN addresses upnpd serves (and whose subnets are "the LAN"): from `lan` interfaces, or
 * loopback (127.0.0.1/8 on 'lo') in dry-run unless --lan was given.
 */
export const LAN_ADDRESSES: InjectionToken<readonly InterfaceAddress[]> = Symbol('upnpd.LanAddresses');
/** The mapping table, read only. Available once the daemon runs: resolve it in a hook, not in a constructor. */
export const MAPPINGS: InjectionToken<MappingView> = Symbol('upnpd.Mappings');
/** Refusals counted by policy and rule (metrics read them). */
export const REFUSALS: InjectionToken<RefusalRegistry> = Symbol('upnpd.Refusals');
/** Inside a plugin's own child container: its validated options. */
export const PLUGIN_OPTIONS: InjectionToken<unknown> = Symbol('upnpd.PluginOptions');
