import 'reflect-metadata';
import { describe, expect, it } from 'vitest';
import {
  MAPPINGS,
  inject,
  injectable,
  z,
  PLUGIN_OPTIONS,
  UpnpError,
  UpnpErrorCode,
  defineBackend,
  definePlugin,
  description,
  type MappingRequest,
  type MappingView,
  type Plugin,
  type PluginSpec,
  type Requester,
} from 'upnpd';
import { startDaemon } from '../../app/compose.js';
import { configSchema, type ResolvedConfig } from '../../core/config/schema.js';
import type { Daemon } from '../../core/daemon.js';
import { toUpnpFault } from '../../core/errors.js';
import { createRootLogger } from '../../core/logging.js';
import { RecordingBackend, RecordingLogger } from '../support/fakes.js';

// The examples of the README's "Writing a plugin", run the way the daemon runs plugins: listed in
// a config, built by the composition root, driven through the mapping lifecycle.

const options = z.object({ maxPerClient: z.number().int().min(1).default(16) }).strict();

/** The README's example: no decorators, options resolved from the container. */
const quota = definePlugin({
  name: 'quota',
  optionsSchema: options,
  create: (container): Plugin => {
    const { maxPerClient } = container.resolve(PLUGIN_OPTIONS) as z.output<typeof options>;
    return {
      name: 'quota',
      hooks: {
        beforeMap: (request, { requester, mappings }) => {
          const held = [...mappings.values()].filter((m) => m.internalClient === requester.address).length;
          if (held >= maxPerClient) throw new UpnpError(UpnpErrorCode.NoPortMapsAvailable, 'quota reached');
        },
      },
    };
  },
});

/** The README's class variant: `@inject(TOKEN)` on every constructor parameter. */
@injectable()
class QuotaClass implements Plugin {
  readonly name = 'quota-class';
  constructor(@inject(PLUGIN_OPTIONS) private readonly opts: z.output<typeof options>) {}
  readonly hooks: Plugin['hooks'] = {
    beforeMap: (request, { requester, mappings }) => {
      const held = [...mappings.values()].filter((m) => m.internalClient === requester.address).length;
      if (held >= this.opts.maxPerClient) throw new UpnpError(UpnpErrorCode.NoPortMapsAvailable, 'quota reached');
    },
  };
}
const quotaClass = definePlugin({ name: 'quota-class', optionsSchema: options, create: (c) => c.resolve(QuotaClass) });

const CLIENT: Requester = { address: '127.0.0.1', via: 'test' };

function request(externalPort: number): MappingRequest {
  return {
    remoteHost: '',
    externalPort,
    protocol: 'TCP',
    internalClient: CLIENT.address,
    internalPort: externalPort,
    enabled: true,
    description: '',
    leaseSeconds: 60,
  };
}

async function withDaemon(plugins: readonly PluginSpec[], run: (daemon: Daemon) => Promise<void>): Promise<void> {
  const firewall = new RecordingBackend();
  const config: ResolvedConfig = {
    ...configSchema.parse({ lan: ['lo'], externalIp: '203.0.113.1', logLevel: 'silent' }),
    source: 'test',
    lanFromCommandLine: true,
    plugins: [...plugins, defineBackend({ name: 'memory', create: () => firewall })()],
  };
  const { output } = createRootLogger({ level: 'silent' });
  const daemon = await startDaemon(config, { logger: new RecordingLogger(), logOutput: output });
  try {
    await run(daemon);
  } finally {
    await daemon.stop();
  }
}

describe('a third-party policy plugin written as the README shows', () => {
  for (const [kind, spec] of [
    ['without decorators', quota({ maxPerClient: 2 })],
    ['as a class with @inject', quotaClass({ maxPerClient: 2 })],
  ] as const) {
    it(`${kind}: gets its parsed options and vetoes past its quota with its UPnP code`, async () => {
      await withDaemon([spec], async (daemon) => {
        await daemon.mappings.add(request(40001), CLIENT);
        await daemon.mappings.add(request(40002), CLIENT);
        const refused = await daemon.mappings.add(request(40003), CLIENT).catch((e: unknown) => e);
        expect(toUpnpFault(refused).upnpCode).toBe(728);
        expect(daemon.mappings.size).toBe(2);
      });
    });
  }

  it("sees the description already cleaned, also an order: 'pre' plugin listed before description() (README: the description policy always runs first)", async () => {
    const seen: string[] = [];
    const early = definePlugin({
      name: 'early',
      create: (): Plugin => ({
        name: 'early',
        order: 'pre',
        hooks: {
          beforeMap: (request) => {
            seen.push(request.description);
          },
        },
      }),
    });
    await withDaemon([early(), description({ maxBytes: 8 })], async (daemon) => {
      await daemon.mappings.add({ ...request(40020), description: 'forged\nline and more' }, CLIENT);
      expect(seen).toEqual(['forgedli']);
    });
  });

  it('reads the table through MAPPINGS in a hook: read only, without the lifecycle methods', async () => {
    let view: MappingView | undefined;
    const seen: number[] = [];
    const observer = definePlugin({
      name: 'observer',
      optionsSchema: z.object({}).strict(),
      create: (container): Plugin => ({
        name: 'observer',
        hooks: {
          onMapped: () => {
            view = container.resolve(MAPPINGS);
            seen.push(view.size);
          },
        },
      }),
    });
    await withDaemon([observer()], async (daemon) => {
      await daemon.mappings.add(request(40010), CLIENT);
      await daemon.mappings.settled();
      await new Promise((resolve) => setImmediate(resolve));
      expect(seen).toEqual([1]);
      expect(view?.get(request(40010))?.externalPort).toBe(40010);
      for (const method of ['add', 'addAny', 'delete', 'deleteMatching', 'removeAll', 'close', 'restore']) expect(view).not.toHaveProperty(method);
    });
  });

  it('reading MAPPINGS before the daemon runs is an error that says where to read it', () => {
    let failure: unknown;
    const eager = definePlugin({
      name: 'eager',
      optionsSchema: z.object({}).strict(),
      create: (container): Plugin => {
        try {
          void container.resolve(MAPPINGS).size;
        } catch (err) {
          failure = err;
        }
        return { name: 'eager' };
      },
    });
    return withDaemon([eager()], () => {
      expect(String(failure)).toMatch(/read MAPPINGS inside a hook, not in a constructor/);
      return Promise.resolve();
    });
  });
});
