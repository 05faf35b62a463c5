import { execa } from 'execa';
import { describe, it } from 'vitest';

/** Whether a program is installed (for tests that need iptables, nft, upnpc). */
export async function haveProgram(name: string): Promise<boolean> {
  const r = await execa('sh', ['-c', `command -v ${name}`], { reject: false });
  return r.exitCode === 0;
}

/** Why tests needing these programs cannot run here, or undefined when they can. */
export async function missingPrograms(programs: readonly string[]): Promise<string | undefined> {
  const missing = [];
  for (const p of programs) if (!(await haveProgram(p))) missing.push(p);
  return missing.length > 0 ? `missing programs: ${missing.join(', ')}` : undefined;
}

/**
 * `describe` for tests that need something of the machine. `whyNot` resolves to the reason they
 * cannot run, or undefined. Where they cannot run they are reported as skipped with the reason;
 * under CI=true that is a failing test instead, because CI must prove what they test.
 */
export function describeRequiring(name: string, whyNot: Promise<string | undefined>, body: () => void): void {
  describe(name, async () => {
    const reason = await whyNot;
    if (reason && process.env.CI === 'true') {
      it('can run here, as CI requires', () => {
        throw new Error(`these tests cannot run here: ${reason}`);
      });
      return;
    }
    if (reason) {
      describe.skipIf(true)(`skipped: ${reason}`, body);
      return;
    }
    body();
  });
}
