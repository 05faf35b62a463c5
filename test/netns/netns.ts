import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { execa } from 'execa';
import { startCommand, type CommandResult, type CommandRunner, type RunningCommand } from '../../core/command-runner.js';
import { describeRequiring, missingPrograms } from '../support/requirements.js';

/**
 * Network namespaces that a test creates for itself. Nothing here touches the root namespace:
 * every command runs through `ip netns exec NAME`. Names start with `upnpdt-` so a leak is obvious.
 */
export class TestNamespace {
  private constructor(readonly name: string) {}

  static async create(role: string): Promise<TestNamespace> {
    const name = `upnpdt-${role}-${randomBytes(3).toString('hex')}`.slice(0, 30);
    await execa('ip', ['netns', 'add', name]);
    const ns = new TestNamespace(name);
    try {
      await ns.exec('ip', ['link', 'set', 'lo', 'up']);
    } catch (err) {
      await ns.destroy();
      throw err;
    }
    return ns;
  }

  /** Runs a command inside the namespace; rejects on non-zero exit. */
  async exec(file: string, args: readonly string[], options: { input?: string; timeoutMs?: number } = {}): Promise<string> {
    const r = await execa('ip', ['netns', 'exec', this.name, file, ...args], {
      input: options.input,
      timeout: options.timeoutMs ?? 30_000,
    });
    return r.stdout;
  }

  /** A CommandRunner whose commands run inside this namespace (for backends under test). */
  runner(): CommandRunner {
    const name = this.name;
    return {
      async run(file, args, options = {}): Promise<CommandResult> {
        const r = await execa('ip', ['netns', 'exec', name, file, ...args], {
          input: options.input,
          timeout: options.timeoutMs ?? 30_000,
          reject: false,
          stripFinalNewline: false,
          env: { LC_ALL: 'C' },
        });
        return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
      },
      start(file, args, options = {}): RunningCommand {
        // `ip netns exec` execs the program, so the pid is the program's own.
        return startCommand('ip', ['netns', 'exec', name, file, ...args], options);
      },
    };
  }

  /** The processes in this namespace whose command line is exactly `commandLine` (arguments joined by spaces). */
  async pidsRunning(commandLine: string): Promise<number[]> {
    const { stdout } = await execa('ip', ['netns', 'pids', this.name]);
    return stdout
      .split('\n')
      .filter(Boolean)
      .map(Number)
      .filter((pid) => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ') === commandLine;
        } catch {
          return false; // exited meanwhile
        }
      });
  }

  async destroy(): Promise<void> {
    // Kill anything still running in the namespace, then remove it.
    await execa('ip', ['netns', 'pids', this.name], { reject: false }).then(async (r) => {
      const pids = String(r.stdout).split(/\s+/).filter(Boolean);
      if (pids.length > 0) await execa('kill', ['-9', ...pids], { reject: false });
    });
    await execa('ip', ['netns', 'delete', this.name], { reject: false });
  }
}

/** Why namespace tests cannot run here, or undefined when they can (root, `ip netns` works). */
export async function namespaceSupport(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root (ip netns add)';
  const probe = `upnpdt-probe-${randomBytes(3).toString('hex')}`;
  const r = await execa('ip', ['netns', 'add', probe], { reject: false });
  if (r.exitCode !== 0) return `ip netns add failed: ${String(r.stderr).trim()}`;
  await execa('ip', ['netns', 'delete', probe], { reject: false });
  return undefined;
}

/**
 * `describe` for tests that need network namespaces and the named programs: skipped with the
 * reason where they cannot run, a failing test under CI=true (see describeRequiring).
 */
export function describeNetns(name: string, programs: readonly string[], body: () => void): void {
  const whyNot = (async () => (await missingPrograms(programs)) ?? (await namespaceSupport()))();
  describeRequiring(name, whyNot, body);
}
