import { request } from 'node:http';
import { messageOf } from '../../errors.js';
import { isLinkLocalIpv6, parseIpv6 } from '../../net/ipv6.js';
import { XML_CONTENT_TYPE } from '../http/reply.js';

/** One event message for one subscription. */
export interface NotifyMessage {
  readonly sid: string;
  /** The event key (SEQ). */
  readonly seq: number;
  /** A property set document (see propertySetXml). */
  readonly body: string;
}

export interface DeliveryOptions {
  /** The whole exchange (connect, send, response) must finish within this time. */
  readonly timeoutMs: number;
  /** Aborts the exchange early (the event service is closing). */
  readonly signal: AbortSignal;
  /**
   * The interface a link-local subscriber is reached through: the zone of its address as its
   * request arrived. A link-local delivery URL cannot name it (a URL holds no zone), and without
   * one the kernel cannot tell which link the address is on.
   */
  readonly zone?: string;
}

/**
 * Delivers a NOTIFY to the first delivery URL that accepts it (UDA 1.1 §4.3: try the URLs in
 * order). Rejects, naming every failure, when none answered 2xx.
 */
export async function deliverNotify(urls: readonly URL[], message: NotifyMessage, options: DeliveryOptions): Promise<void> {
  const failures: string[] = [];
  for (const url of urls) {
    if (options.signal.aborted) break;
    try {
      await sendNotify(url, message, options);
      return;
    } catch (err) {
      failures.push(`${url.href}: ${messageOf(err)}`);
    }
  }
  throw new Error(failures.length > 0 ? failures.join('; ') : 'delivery aborted');
}

/** One NOTIFY to one URL over a fresh connection; resolves when the subscriber answered 2xx. */
export async function sendNotify(url: URL, message: NotifyMessage, options: DeliveryOptions): Promise<void> {
  // One controller per exchange, unlinked afterwards: AbortSignal.any on the service's long-lived
  // signal would leak a dependent signal per NOTIFY (nodejs/node#55351).
  const exchange = new AbortController();
  let timedOut = false;
  const deadline = setTimeout(() => {
    timedOut = true;
    exchange.abort();
  }, options.timeoutMs);
  const abortExchange = () => exchange.abort();
  options.signal.addEventListener('abort', abortExchange, { once: true });
  try {
    return await exchangeNotify(url, message, exchange.signal, options.zone);
  } catch (err) {
    throw timedOut ? new Error(`no answer within ${options.timeoutMs} ms`) : err;
  } finally {
    clearTimeout(deadline);
    options.signal.removeEventListener('abort', abortExchange);
  }
}

function exchangeNotify(url: URL, message: NotifyMessage, signal: AbortSignal, zone: string | undefined): Promise<void> {
  const body = Buffer.from(message.body, 'utf8');
  const linkLocal = linkLocalTarget(url, zone);
  return new Promise<void>((resolve, reject) => {
    const fail = (err: unknown) => reject(err instanceof Error ? err : new Error(String(err)));
    const req = request(
      url,
      {
        ...(linkLocal && { hostname: linkLocal.hostname }),
        method: 'NOTIFY',
        // No pooling: a subscriber's slow or dead socket never holds anything beyond this exchange.
        agent: false,
        signal,
        headers: {
          ...(linkLocal && { HOST: linkLocal.host }),
          'CONTENT-TYPE': XML_CONTENT_TYPE,
          NT: 'upnp:event',
          NTS: 'upnp:propchange',
          SID: message.sid,
          SEQ: String(message.seq),
          'CONTENT-LENGTH': String(body.length),
        },
      },
      (res) => {
        const status = res.statusCode ?? 0;
        // The body means nothing to us; read it away so the exchange can complete.
        res.resume();
        res.on('end', () => (status >= 200 && status < 300 ? resolve() : fail(new Error(`answered HTTP ${status}`))));
        res.on('error', fail);
        res.on('close', () => fail(new Error('connection closed before the answer ended')));
      },
    );
    req.on('error', fail);
    req.end(body);
  });
}

/**
 * For a link-local URL and a zone: the address to connect to with that zone, and the URL's own
 * host (without zone) as the Host header, as the subscriber wrote it. Nothing otherwise.
 */
function linkLocalTarget(url: URL, zone: string | undefined): { hostname: string; host: string } | undefined {
  if (zone === undefined || !url.hostname.startsWith('[')) return undefined;
  const address = url.hostname.slice(1, -1);
  const parsed = parseIpv6(address);
  if (!parsed || !isLinkLocalIpv6(parsed.value)) return undefined;
  return { hostname: `${address}%${zone}`, host: url.host };
}
