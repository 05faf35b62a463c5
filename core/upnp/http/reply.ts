import { ServerResponse, type IncomingMessage } from 'node:http';

/** A complete HTTP response. upnpd always knows its length up front: nothing is ever sent chunked. */
export interface HttpReply {
  readonly status: number;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string;
  /** Close the connection after this response (refusals of hostile or broken requests). */
  readonly close?: boolean;
}

export const XML_CONTENT_TYPE = 'text/xml; charset="utf-8"';

/**
 * A response that knows the SERVER header of the server it belongs to (UpnpHttpServer makes its
 * responses of a subclass that says which), so that sendReply sends it with the other headers.
 */
export class UpnpServerResponse<Request extends IncomingMessage = IncomingMessage> extends ServerResponse<Request> {
  get serverHeader(): string | undefined {
    return undefined;
  }
}

/**
 * Sends the whole reply: its headers in one writeHead, as a list (no setHeader, whose name
 * checks and header map cost about as much per request as the rest of sending), then the body.
 */
export function sendReply(res: ServerResponse, reply: HttpReply): void {
  if (res.headersSent || res.destroyed) return;
  const body = reply.body ?? '';
  const head: Array<string | number> = [];
  const server = res instanceof UpnpServerResponse ? res.serverHeader : undefined;
  if (server !== undefined && !(reply.headers && hasHeader(reply.headers, 'server'))) head.push('Server', server);
  if (reply.headers) for (const name in reply.headers) head.push(name, reply.headers[name]!);
  head.push('Content-Length', Buffer.byteLength(body, 'utf8'));
  if (reply.close) head.push('Connection', 'close');
  res.writeHead(reply.status, head);
  // As a string (not a Buffer) the body is joined to the head by Node: no Buffer copied per reply.
  res.end(body, 'utf8');
}

function hasHeader(headers: Readonly<Record<string, string>>, lowerCaseName: string): boolean {
  for (const name in headers) if (name.toLowerCase() === lowerCaseName) return true;
  return false;
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
