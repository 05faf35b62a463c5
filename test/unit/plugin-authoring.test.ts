import 'reflect-metadata';
import { inject, injectable, container as rootContainer } from 'tsyringe';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { definePlugin, PLUGIN_OPTIONS, UpnpError, UpnpErrorCode, type Plugin } from '../../core/index.js';
import { toUpnpFault } from '../../core/errors.js';
import { makeMappings } from '../support/fakes.js';

// The example from the README's "Writing a plugin", built the way the daemon builds plugins.
const options = z.object({ maxPerClient: z.number().int().min(1).default(16) }).strict();

@injectable()
class Quota implements Plugin {
  readonly name = 'quota';
  constructor(@inject(PLUGIN_OPTIONS) private readonly opts: z.output<typeof options>) {}
  readonly hooks: Plugin['hooks'] = {
    beforeMap: (request, { requester, mappings }) => {
      const held = [...mappings.values()].filter((m) => m.internalClient === requester.address).length;
      if (held >= this.opts.maxPerClient) throw new UpnpError(UpnpErrorCode.NoPortMapsAvailable, 'quota reached');
    },
  };
}

const quota = definePlugin({ name: 'quota', optionsSchema: options, create: (c) => c.resolve(Quota) });

describe('a third-party policy plugin written as the README shows', () => {
  it('gets its parsed options by injection and vetoes past its quota with its UPnP code', async () => {
    const spec = quota({ maxPerClient: 2 });
    const child = rootContainer.createChildContainer();
    child.register(PLUGIN_OPTIONS, { useValue: spec.optionsSchema!.parse(spec.options) });
    const { mappings } = makeMappings({ plugins: [spec.create(child)] });
    const requester = { address: '192.168.77.10', via: 'test' };
    const request = (externalPort: number) => ({ remoteHost: '', externalPort, protocol: 'TCP' as const, internalClient: requester.address, internalPort: externalPort, enabled: true, description: '', leaseSeconds: 60 });
    await mappings.add(request(1), requester);
    await mappings.add(request(2), requester);
    const refused = await mappings.add(request(3), requester).catch((e: unknown) => e);
    expect(toUpnpFault(refused).upnpCode).toBe(728);
    expect(mappings.size).toBe(2);
  });
});
