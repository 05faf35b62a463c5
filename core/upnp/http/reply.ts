import type { ServerResponse } from 'node:http';

/** A complete HTTP response. upnpd always knows its length up front: nothing is ever sent chunked. */
export interface HttpReply {
  readonly status: number;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string;
  /** Close the connection after this response (refusals of hostile or broken requests). */
  readonly close?: boolean;
}

export const XML_CONTENT_TYPE = 'text/xml; charset="utf-8"';

export function sendReply(res: ServerResponse, reply: HttpReply): void {
  if (res.headersSent || res.destroyed) return;
  const body = reply.body ?? '';
  res.statusCode = reply.status;
  for (const [name, value] of Object.entries(reply.headers ?? {})) res.setHeader(name, value);
  res.setHeader('Content-Length', Buffer.byteLength(body, 'utf8'));
  if (reply.close) res.setHeader('Connection', 'close');
  // As a string (not a Buffer) the body is joined to the head by Node: no Buffer copied per reply.
  res.end(body, 'utf8');
}

/** A reply with no body, for refusals (the status says it all). */
export function statusReply(status: number, options: { close?: boolean; headers?: Record<string, string> } = {}): HttpReply {
  return { status, headers: options.headers, close: options.close };
}

/**
 * 503 with Retry-After (whole seconds, at least 1): a request refused by a rate limit. An HTTP
 * status rather than a UPnP fault, because it says "later", not "this mapping cannot be": clients
 * treat 501/718 as a reason to try another port at once, and 728 as a full table.
 */
export function retryLaterReply(retryAfterMs: number): HttpReply {
  return statusReply(503, { headers: { 'Retry-After': String(Math.max(1, Math.ceil(retryAfterMs / 1000))) } });
}
