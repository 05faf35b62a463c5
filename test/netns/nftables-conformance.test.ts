import 'reflect-metadata';
import { silentLogger } from '../../core/logger.js';
import { describeBackendConformance } from '../../core/testing/index.js';
import { NftablesBackend } from '../../plugins/nftables/backend.js';
import { nftablesOptionsSchema } from '../../plugins/nftables/options.js';
import { describeNetns, TestNamespace } from './netns.js';

describeNetns('nftables backend', ['nft'], () => {
  describeBackendConformance('nftables', async () => {
    const ns = await TestNamespace.create('nftconf');
    const options = nftablesOptionsSchema.parse({ wanInterface: 'wan0' });
    return { backend: new NftablesBackend(options, ns.runner(), silentLogger, undefined), teardown: () => ns.destroy() };
  });

  describeBackendConformance('nftables, jump from the admin forward chain', async () => {
    const ns = await TestNamespace.create('nftconfj');
    await ns.exec('nft', ['-f', '-'], { input: 'table ip filter {\n\tchain FORWARD {\n\t\ttype filter hook forward priority filter; policy drop;\n\t}\n}\n' });
    const options = nftablesOptionsSchema.parse({ wanInterface: 'wan0', forwardJump: { family: 'ip', table: 'filter', chain: 'FORWARD' } });
    return { backend: new NftablesBackend(options, ns.runner(), silentLogger, undefined), teardown: () => ns.destroy() };
  });
});
