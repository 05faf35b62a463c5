/** What a SOAPACTION header names: an action of a service type, or the UDA 1.0 QueryStateVariable. */
export type SoapAction =
  { readonly kind: 'action'; readonly serviceName: string; readonly version: number; readonly action: string } | { readonly kind: 'query-state-variable' };

/** Longer SOAPACTION values are refused before any parsing (bounded input; ours are < 100 characters). */
export const MAX_SOAPACTION_LENGTH = 256;

const SERVICE_ACTION = /^urn:schemas-upnp-org:service:([A-Za-z][\w-]{0,63}):([1-9]\d{0,2})#([A-Za-z_]\w{0,63})$/i;
const QUERY_STATE_VARIABLE = /^urn:schemas-upnp-org:control-1-0#QueryStateVariable$/i;

/**
 * Reads a SOAPACTION value in every form clients send: `"type#Action"` (UDA), unquoted
 * (libtorrent), or single-quoted. Returns undefined for anything else — including a lone or
 * unbalanced quote (miniupnpd's CVE-2026-5720 came from such a value).
 */
export function parseSoapAction(header: string): SoapAction | undefined {
  const value = unquote(header.trim());
  if (value === undefined) return undefined;
  if (QUERY_STATE_VARIABLE.test(value)) return { kind: 'query-state-variable' };
  const match = SERVICE_ACTION.exec(value);
  if (!match) return undefined;
  return { kind: 'action', serviceName: match[1]!, version: Number(match[2]), action: match[3]! };
}

function unquote(value: string): string | undefined {
  const first = value[0];
  if (first !== '"' && first !== "'") return /["']/.test(value) ? undefined : value;
  if (value.length < 2 || value[value.length - 1] !== first) return undefined;
  const inner = value.slice(1, -1);
  return /["']/.test(inner) ? undefined : inner;
}
