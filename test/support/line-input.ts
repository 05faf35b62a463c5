import type { Readable } from 'node:stream';

/**
 * Feeds `input` to `read` a line at a time, as a program reading commands from its stdin does;
 * stops while `reading()` is false (a fake that has ended or hangs) and keeps what is not read.
 */
export function readLines(input: Readable, read: (line: string) => void, reading: () => boolean): void {
  let pending = '';
  input.setEncoding('utf8');
  input.on('data', (chunk: string) => {
    pending += chunk;
    let newline: number;
    while (reading() && (newline = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      read(line);
    }
  });
}
