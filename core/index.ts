/** upnpd's public API for configuration files and plugin authors. */
export { defineConfig, type UserConfig, type ResolvedConfig } from './config/schema.js';
export { definePlugin, backendPlugin } from './plugins/define.js';
export { HOOK_KINDS } from './plugins/types.js';
export type {
  Plugin,
  PluginSpec,
  Hooks,
  HookName,
  HookKind,
  PolicyContext,
  MappingView,
  MappedEvent,
  UnmappedEvent,
  ExternalAddressChangeEvent,
  FirewallBackend,
  BackendCapabilities,
} from './plugins/types.js';
export { CLOCK, COMMAND_RUNNER, CONFIG, LAN_ADDRESSES, LOGGER, MAPPINGS, NETWORK_INFO, PLUGIN_OPTIONS } from './plugins/tokens.js';
export type { ChangeSet, MappingKey, MappingRequest, PortMapping, Protocol, Requester, RuleSpec } from './mapping/types.js';
export { UpnpError, UpnpErrorCode, BackendError, UpnpdError, ConfigError, PluginHookError, PluginRegistrationError } from './errors.js';
export type { CommandRunner, CommandResult } from './command-runner.js';
export type { Logger } from './logger.js';
export { iptables } from '../plugins/iptables/index.js';
export { nftables } from '../plugins/nftables/index.js';
export { dryRun } from '../plugins/dry-run/index.js';
export { logging } from '../plugins/logging/index.js';
export { secureMode } from '../plugins/secure-mode/index.js';
