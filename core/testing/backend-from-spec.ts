import { container } from 'tsyringe';
import type { CommandRunner } from '../command-runner.js';
import { configSchema, type ResolvedConfig } from '../config/schema.js';
import { silentLogger, type Logger } from '../logger.js';
import type { BackendContext, BackendSpec, FirewallBackend } from '../plugins/types.js';

/** What a test gives a backend in place of the daemon's services. */
export interface TestServices {
  /** Runs the backend's commands (a fake, or a runner that enters a network namespace). */
  readonly commands: CommandRunner;
  /** Config keys the backend reads (e.g. `wan`); the rest are the defaults. */
  readonly config?: Partial<ResolvedConfig>;
  readonly logger?: Logger;
}

/**
 * Builds a backend from its spec the way the daemon does (options parsed by the spec's schema,
 * the daemon's services in a context), for tests: `backendFromSpec(mine({ path }), { commands })`.
 */
export function backendFromSpec(spec: BackendSpec, services: TestServices): FirewallBackend {
  return spec.create(backendContext(spec, services));
}

function backendContext<O>(spec: BackendSpec<O>, services: TestServices): BackendContext<O> {
  const options = (spec.optionsSchema ? spec.optionsSchema.parse(spec.options) : spec.options) as O;
  const config: ResolvedConfig = { ...configSchema.parse({}), source: 'test', lanFromCommandLine: false, plugins: [], ...services.config };
  return {
    options,
    config,
    logger: services.logger ?? silentLogger,
    commands: services.commands,
    container: container.createChildContainer(),
    build: (inner) => backendFromSpec(inner, services),
  };
}
