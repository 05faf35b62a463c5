import { fstatSync } from 'node:fs';
import { isTerminal, prettyRenderer, renderJson, streamDestination, type LogDestination, type LogRenderer } from 'upnpd';
import type { StdoutFormat } from './options.js';
import { severityOf } from './priority.js';
import { messageText } from './text.js';

/**
 * journald's stdout format: one line per record, prefixed with the syslog severity as `<N>`
 * (sd-daemon(3)), which journald strips and stores as the entry's priority.
 */
export const renderJournald: LogRenderer = (record) => `<${severityOf(record.level)}>${messageText(record)}\n`;

/** What 'auto' looks at. */
export interface StdoutFacts {
  readonly isTerminal: boolean;
  /** $JOURNAL_STREAM ("DEVICE:INODE" of the journal's stream), if set. */
  readonly journalStream: string | undefined;
  /** "DEVICE:INODE" of the stream's file descriptor, when it has one. */
  readonly streamIdentity: string | undefined;
}

/**
 * 'auto': readable text on a terminal; journald's format when stdout is the journal's stream
 * (systemd sets JOURNAL_STREAM, and sd-daemon(3) says to compare it with the descriptor, since a
 * child may inherit the variable with another stdout); JSON otherwise.
 */
export function chooseStdoutFormat(facts: StdoutFacts): StdoutFormat {
  if (facts.isTerminal) return 'pretty';
  if (facts.journalStream !== undefined && facts.journalStream !== '') {
    if (facts.streamIdentity === undefined || facts.streamIdentity === facts.journalStream) return 'journald';
  }
  return 'json';
}

export function stdoutFacts(stream: NodeJS.WritableStream, env: NodeJS.ProcessEnv = process.env): StdoutFacts {
  return { isTerminal: isTerminal(stream), journalStream: env.JOURNAL_STREAM, streamIdentity: identityOf(stream) };
}

function identityOf(stream: NodeJS.WritableStream): string | undefined {
  const fd = (stream as { fd?: unknown }).fd;
  if (typeof fd !== 'number') return undefined;
  try {
    const stat = fstatSync(fd, { bigint: true });
    return `${stat.dev}:${stat.ino}`;
  } catch {
    return undefined;
  }
}

const RENDERERS: Record<StdoutFormat, (stream: NodeJS.WritableStream) => LogRenderer> = {
  json: () => renderJson,
  pretty: (stream) => prettyRenderer({ colorize: isTerminal(stream) }),
  journald: () => renderJournald,
};

export function stdoutDestination(stream: NodeJS.WritableStream, format: StdoutFormat | 'auto'): LogDestination {
  const chosen = format === 'auto' ? chooseStdoutFormat(stdoutFacts(stream)) : format;
  return streamDestination(stream, RENDERERS[chosen](stream));
}
