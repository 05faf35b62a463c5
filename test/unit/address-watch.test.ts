import { readdirSync, readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { OsNetworkInfo } from '../../core/net/network-info.js';
import { describeRequiring, missingPrograms } from '../support/requirements.js';

/** This process's children running `ip -o monitor label address neigh` (nothing in the network is changed). */
function addressMonitors(): number {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        return parent === process.pid && readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').startsWith('ip -o monitor label address neigh');
      } catch {
        return false;
      }
    }).length;
}

async function eventually(condition: () => boolean): Promise<boolean> {
  for (let i = 0; i < 100 && !condition(); i += 1) await new Promise((resolve) => setTimeout(resolve, 20));
  return condition();
}

describeRequiring('address events', missingPrograms(['ip']), () => {
  it('runs one ip monitor however many watch addresses or neighbours, until the last stops watching', async () => {
    const network = new OsNetworkInfo();
    const stopWan = network.watchAddresses(() => {});
    const stopLan = network.watchAddresses(() => {});
    const stopNeighbours = network.watchNeighbours(() => {});
    expect(await eventually(() => addressMonitors() === 1)).toBe(true);
    stopWan();
    stopNeighbours();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(addressMonitors()).toBe(1);
    stopLan();
    expect(await eventually(() => addressMonitors() === 0)).toBe(true);
    const again = network.watchAddresses(() => {});
    expect(await eventually(() => addressMonitors() === 1)).toBe(true);
    again();
    expect(await eventually(() => addressMonitors() === 0)).toBe(true);
  });
});
