import { execa } from 'execa';

export interface CommandResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs an external program (iptables-restore, nft, ...). Never throws for a non-zero exit:
 * callers decide what a failure means. Throws only when the program cannot be started.
 */
export interface CommandRunner {
  run(file: string, args: readonly string[], options?: { input?: string; timeoutMs?: number }): Promise<CommandResult>;
}

export class ExecaCommandRunner implements CommandRunner {
  async run(file: string, args: readonly string[], options: { input?: string; timeoutMs?: number } = {}): Promise<CommandResult> {
    const result = await execa(file, args, {
      input: options.input,
      timeout: options.timeoutMs ?? 30_000,
      reject: false,
      stripFinalNewline: false,
      env: { LC_ALL: 'C' },
    });
    if (result.failed && result.exitCode === undefined) {
      const err = new Error(`cannot run ${file}: ${result.shortMessage}`);
      (err as NodeJS.ErrnoException).code = (result as unknown as { code?: string }).code;
      throw err;
    }
    return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
  }
}
