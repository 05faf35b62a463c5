/** upnpd's public API for configuration files and plugin authors (`import … from 'upnpd'`). */
// tsyringe needs the Reflect metadata API before any plugin class is decorated.
import 'reflect-metadata';
export { defineConfig, rateLimitSchema, type UserConfig, type ResolvedConfig } from './config/schema.js';
// The zod upnpd validates options with (4.x): a plugin's optionsSchema must come from it.
export { z } from 'zod';
// The tsyringe upnpd builds plugins with: a plugin class's @injectable() must register with this
// one (a copy of its own keeps its own registry: "TypeInfo not known"), and a config in /etc/upnpd finds no other.
export { inject, injectable } from 'tsyringe';
export { definePlugin, defineBackend, firewallPlugin } from './plugins/define.js';
export { HOOK_KINDS } from './plugins/types.js';
export type {
  AnyPluginSpec,
  BackendCapabilities,
  BackendContext,
  BackendSpec,
  ExternalAddressChangeEvent,
  Finding,
  FirewallBackend,
  HookKind,
  HookName,
  Hooks,
  IntegrityReport,
  LanAddressChangeEvent,
  MappedEvent,
  MappingView,
  Pinhole,
  PinholeBackend,
  PinholeChanges,
  PinholeEvent,
  PinholePolicyContext,
  PinholeRequest,
  PinholeRule,
  PinholeView,
  RepairedEvent,
  Plugin,
  PluginSpec,
  PolicyContext,
  UnmappedEvent,
  UnmapReason,
} from './plugins/types.js';
export { CLOCK, COMMAND_RUNNER, CONFIG, LAN_ADDRESSES, LOGGER, MAPPINGS, NETWORK_INFO, PLUGIN_OPTIONS, REFUSALS } from './plugins/tokens.js';
export { REFUSAL_LOG_LIMITS, RefusalRegistry, RefusalReporter, refusalReporter, type Refusal } from './plugins/refusals.js';
export type { ChangeSet, MappingKey, MappingRequest, PortMapping, Protocol, Requester, RuleSpec } from './mapping/types.js';
export {
  UpnpError,
  UpnpErrorCode,
  ClientQuotaError,
  type QuotaErrorCode,
  BackendError,
  UpnpdError,
  ConfigError,
  PluginHookError,
  PluginRegistrationError,
  messageOf,
  upnpErrorIn,
} from './errors.js';
export type { Clock } from './clock.js';
// For protocol front-end plugins (Plugin.frontEnd): what the daemon hands them.
export type { ExternalAddress, FrontEnd, FrontEndContext, FrontEndFactory, FrontEndMappings, LanAddresses } from './front-end.js';
export type { RestoredState } from './mapping/state-file.js';
export type { AddAnyOptions } from './mapping/service.js';
export type { ClientLimits, ClientLimitSettings } from './limits/client-limits.js';
export { ClientRateLimiter, type RateDecision, type RateLimit } from './limits/rate-limiter.js';
export { ClientSlots } from './limits/client-slots.js';
export { protocolOf } from './mapping/types.js';
export type { CommandRunner, CommandResult, CommandExit, RunningCommand, StartCommandOptions } from './command-runner.js';
// For plugins that keep a helper program running (the syslog output's `logger`).
export { startCommand } from './command-runner.js';
export type { Logger, LogLevel } from './logger.js';
export { SubnetSet, broadcastAddress, networkAddress, type InterfaceAddress, type NetworkInfo } from './net/network-info.js';
export { Ipv6Lan, formatIpv6, parseIpv6, type Ipv6InterfaceAddress, type Ipv6Prefix, type ParsedIpv6 } from './net/ipv6.js';
export { SERVICE_ID } from './upnp/identity.js';
// For log-output plugins: where the daemon's records go.
export { LOG_OUTPUT, isTerminal, prettyRenderer, renderJson, streamDestination } from './logging.js';
export type { LogDestination, LogOutput, LogRecord, LogRenderer } from './logging.js';

// The shipped plugins, for config files. Last, so that the API above is complete when they load
// (they import it from 'upnpd' as any third-party plugin does).
export { iptables } from '../plugins/iptables/index.js';
export { nftables } from '../plugins/nftables/index.js';
export { dryRun } from '../plugins/dry-run/index.js';
export { logging } from '../plugins/logging/index.js';
export { secureMode } from '../plugins/secure-mode/index.js';
export { notifications } from '../plugins/notifications/index.js';
export { permissions } from '../plugins/permissions/index.js';
export { reservedPorts } from '../plugins/reserved-ports/index.js';
export { quota } from '../plugins/quota/index.js';
export { description } from '../plugins/description/index.js';
export { remoteHost } from '../plugins/remote-host/index.js';
export { natPmp } from '../plugins/nat-pmp/index.js';
