import { describe, expect, it } from 'vitest';
import { Schedule } from '../schedule.js';

const fast = { name: 'upnpd' };
const slow = { name: 'miniupnpd' };

/** A schedule on a fake clock where each task takes the time given for it. */
function runAll(repeats: number, budgetMs: number, durations: Record<string, number>) {
  let now = 0;
  const schedule = new Schedule<{ name: string }, string>(repeats, budgetMs, () => now);
  const ran: string[] = [];
  return (async () => {
    for (let repeat = 1; repeat <= repeats; repeat += 1) {
      for (const { daemon, group } of schedule.tasks(
        repeat,
        ['requests', 'table'].flatMap((group) => [fast, slow].map((daemon) => ({ daemon, group }))),
      )) {
        await schedule.timed(daemon, group, () => {
          now += durations[`${daemon.name}/${group}`]!;
          ran.push(`${repeat}:${daemon.name}/${group}`);
          return Promise.resolve();
        });
      }
    }
    return { ran, shortfall: schedule.shortfall() };
  })();
}

describe('Schedule', () => {
  it('runs every task every repeat when the budget allows', async () => {
    const { ran, shortfall } = await runAll(2, 1_000, { 'upnpd/requests': 10, 'miniupnpd/requests': 10, 'upnpd/table': 20, 'miniupnpd/table': 50 });
    expect(ran).toHaveLength(8);
    expect(ran.slice(0, 4)).toEqual(['1:upnpd/requests', '1:miniupnpd/requests', '1:upnpd/table', '1:miniupnpd/table']);
    expect(shortfall).toBeUndefined();
  });

  it('runs the cheap tasks first in later repeats and skips one that would overrun, saying so', async () => {
    const { ran, shortfall } = await runAll(3, 500_000, {
      'upnpd/requests': 10_000,
      'miniupnpd/requests': 10_000,
      'upnpd/table': 20_000,
      'miniupnpd/table': 300_000,
    });
    expect(ran.filter((t) => t.endsWith('miniupnpd/table'))).toEqual(['1:miniupnpd/table']);
    expect(ran.filter((t) => t.endsWith('upnpd/requests') && t.includes(':upnpd'))).toHaveLength(3);
    expect(ran.slice(4, 7)).toEqual(['2:upnpd/requests', '2:miniupnpd/requests', '2:upnpd/table']);
    expect(shortfall).toBe('the time budget allowed miniupnpd table: 1 of 3 (one takes about 300 s)');
  });

  it('runs the first repeat in full while there is time, however long each task takes', async () => {
    const { ran } = await runAll(2, 35, { 'upnpd/requests': 10, 'miniupnpd/requests': 10, 'upnpd/table': 10, 'miniupnpd/table': 10 });
    expect(ran).toEqual(['1:upnpd/requests', '1:miniupnpd/requests', '1:upnpd/table', '1:miniupnpd/table']);
  });

  it('starts nothing more once the time is up, and says which tasks it did not reach', async () => {
    const { ran, shortfall } = await runAll(1, 15, { 'upnpd/requests': 10, 'miniupnpd/requests': 10, 'upnpd/table': 10, 'miniupnpd/table': 10 });
    expect(ran).toEqual(['1:upnpd/requests', '1:miniupnpd/requests']);
    expect(shortfall).toBe(
      'the time budget allowed upnpd table: 0 of 1 (not reached before the time was up); miniupnpd table: 0 of 1 (not reached before the time was up)',
    );
  });
});
