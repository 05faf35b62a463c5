import { describe, expect, it } from 'vitest';
import { PluginHookError, PluginRegistrationError, UpnpError, UpnpErrorCode, toUpnpFault } from '../../core/errors.js';
import { silentLogger, type Logger } from '../../core/logger.js';
import { PluginDriver } from '../../core/plugins/driver.js';
import type { Plugin } from '../../core/plugins/types.js';
import type { MappingRequest } from '../../core/mapping/types.js';
import { RecordingBackend, backendPluginFor } from '../support/fakes.js';

const request: MappingRequest = {
  remoteHost: '',
  externalPort: 5000,
  protocol: 'TCP',
  internalClient: '192.168.77.10',
  internalPort: 5000,
  enabled: true,
  description: '',
  leaseSeconds: 60,
};
const context = {
  requester: { address: '192.168.77.10', via: 'test' },
  existing: undefined,
  mappings: { get: () => undefined, size: 0, values: () => [], heldBy: () => 0, ofClient: () => [] },
};

function driverWith(...plugins: Plugin[]): PluginDriver {
  return new PluginDriver([backendPluginFor(new RecordingBackend()), ...plugins], silentLogger);
}

describe('plugin registration is validated at start', () => {
  it.each([
    ['an unknown hook', [{ name: 'p', hooks: { beforeMapp: () => {} } }], /unknown hook "beforeMapp"/],
    ['a hook that is not a function', [{ name: 'p', hooks: { beforeMap: 42 } }], /hook "beforeMap" is not a function/],
    ['a plugin registered twice', [{ name: 'p' }, { name: 'p' }], /"p" is registered twice/],
    ['a plugin without a name', [{ name: '' }], /has no name/],
    ['a bad order', [{ name: 'p', order: 'first' }], /order must be "pre" or "post"/],
    ['a second firewall backend', [backendPluginFor(new RecordingBackend(), 'second')], /only one plugin may fill the firewall slot.*"memory" and "second"/],
  ])('refuses %s', (_, plugins, message) => {
    expect(() => driverWith(...(plugins as unknown as Plugin[]))).toThrow(message);
    expect(() => driverWith(...(plugins as unknown as Plugin[]))).toThrow(PluginRegistrationError);
  });

  it('refuses to run without a firewall backend', () => {
    expect(() => new PluginDriver([{ name: 'policy', hooks: { beforeMap: () => {} } }], silentLogger)).toThrow(/no firewall backend/);
  });

  it('freezes the plugin list', () => {
    const driver = driverWith();
    expect(Object.isFrozen(driver.plugins)).toBe(true);
  });
});

describe('hook kinds', () => {
  it('runs beforeMap sequentially in order: pre, then registration order, then post; each sees the previous adjustment', async () => {
    const seen: string[] = [];
    const tag = (name: string, order?: 'pre' | 'post'): Plugin => ({
      name,
      order,
      hooks: {
        beforeMap: async (r) => {
          seen.push(name);
          await new Promise((resolve) => setTimeout(resolve, 1));
          return { ...r, description: `${r.description}${name}` };
        },
      },
    });
    const driver = driverWith(tag('b'), tag('post', 'post'), tag('c'), tag('pre', 'pre'));
    const result = await driver.hookSeq('beforeMap', request, context);
    expect(seen).toEqual(['pre', 'b', 'c', 'post']);
    expect(result.description).toBe('prebcpost');
  });

  it('a veto stops the chain, names the plugin and hook, and keeps its UPnP code', async () => {
    const later: string[] = [];
    const driver = driverWith(
      {
        name: 'veto',
        hooks: {
          beforeMap: () => {
            throw new UpnpError(UpnpErrorCode.NotAuthorized);
          },
        },
      },
      { name: 'later', hooks: { beforeMap: () => void later.push('ran') } },
    );
    const error = await driver.hookSeq('beforeMap', request, context).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PluginHookError);
    expect((error as Error).message).toMatch(/plugin "veto" failed in hook "beforeMap"/);
    expect(toUpnpFault(error).upnpCode).toBe(606);
    expect(later).toEqual([]);
  });

  it('a policy crash (not a UPnP error) becomes 501 Action Failed', async () => {
    const driver = driverWith({
      name: 'buggy',
      hooks: {
        beforeMap: () => {
          throw new TypeError('oops');
        },
      },
    });
    const error = await driver.hookSeq('beforeMap', request, context).catch((e: unknown) => e);
    expect(toUpnpFault(error).upnpCode).toBe(501);
  });

  it('runs notifications in parallel and logs failures without throwing', async () => {
    const warnings: string[] = [];
    const logger: Logger = { ...silentLogger, warn: (obj: unknown, msg?: string) => void warnings.push(String(msg ?? obj)) };
    const started: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const driver = new PluginDriver(
      [
        backendPluginFor(new RecordingBackend()),
        {
          name: 'slow',
          hooks: {
            onMapped: async () => {
              started.push('slow');
              await gate;
            },
          },
        },
        {
          name: 'fast',
          hooks: {
            onMapped: () => {
              started.push('fast');
              throw new Error('down');
            },
          },
        },
      ],
      logger,
    );
    const done = driver.hookParallel('onMapped', {
      mapping: { ...request, expiresAt: null, createdBy: context.requester },
      previous: undefined,
      requester: context.requester,
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(started).toEqual(['slow', 'fast']);
    release();
    await expect(done).resolves.toBeUndefined();
    expect(warnings).toEqual(['plugin "fast" failed in hook "onMapped": down']);
  });

  it('wraps a failure of the firewall slot as an error naming the plugin', async () => {
    const backend = new RecordingBackend();
    backend.failNext = 1;
    const driver = new PluginDriver([backendPluginFor(backend, 'fw')], silentLogger);
    await expect(driver.firewall.apply({ remove: [], add: [] })).rejects.toThrow(/plugin "fw" failed in hook "firewall.apply": injected failure/);
  });

  it('refuses a firewall that lacks a method of the contract, naming it', () => {
    const incomplete = {
      probe: () => Promise.resolve({ dialect: 'x', remoteHost: false, details: {} }),
      init: async () => {},
      apply: async () => {},
      list: () => Promise.resolve([]),
      shutdown: async () => {},
    };
    expect(() => new PluginDriver([{ name: 'half', firewall: incomplete as never }], silentLogger)).toThrow(
      /plugin "half": its firewall backend has no render method/,
    );
  });
});

describe('provision and cleanup', () => {
  it('cleans up in reverse order, including a plugin whose provision failed half way', async () => {
    const log: string[] = [];
    const plugin = (name: string, failProvision = false): Plugin => ({
      name,
      provision: () => {
        log.push(`provision ${name}`);
        if (failProvision) throw new Error('half done');
      },
      cleanup: () => void log.push(`cleanup ${name}`),
    });
    const driver = driverWith(plugin('a'), plugin('b', true), plugin('c'));
    await expect(driver.provision()).rejects.toThrow(/plugin "b" failed in hook "provision": half done/);
    expect(log).toEqual(['provision a', 'provision b', 'cleanup b', 'cleanup a']);
  });

  it('a failing cleanup does not stop the others', async () => {
    const log: string[] = [];
    const driver = driverWith(
      { name: 'a', cleanup: () => void log.push('a') },
      {
        name: 'b',
        cleanup: () => {
          throw new Error('stuck');
        },
      },
    );
    await driver.provision();
    await driver.cleanup();
    expect(log).toEqual(['a']);
  });
});
