import { container } from 'tsyringe';
import type { CommandRunner } from '../../core/command-runner.js';
import type { ResolvedConfig } from '../../core/config/schema.js';
import { silentLogger, type Logger } from '../../core/logger.js';
import type { BackendContext, BackendSpec } from '../../core/plugins/types.js';

/** What the composition root hands a backend's `create`, for a backend spec under test (options parsed with its schema). */
export function backendContextFor<O>(
  spec: BackendSpec<O>,
  services: { commands: CommandRunner; config?: Partial<ResolvedConfig>; logger?: Logger },
): BackendContext<O> {
  const options = (spec.optionsSchema ? spec.optionsSchema.parse(spec.options) : spec.options) as O;
  return {
    options,
    config: { keepRulesOnShutdown: false, ...services.config } as ResolvedConfig,
    logger: services.logger ?? silentLogger,
    commands: services.commands,
    container: container.createChildContainer(),
    build: (inner) => inner.create(backendContextFor(inner, services)),
  };
}
