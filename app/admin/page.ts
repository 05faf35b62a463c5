import type { DaemonStatus } from '../../core/daemon.js';
import type { ListedMapping } from '../control/protocol.js';

const ESCAPES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

/** The status page: the daemon and its mappings, each with a delete button (a form POST with the page's token). */
export function statusPage(status: DaemonStatus, mappings: readonly ListedMapping[], token: string, notice?: string): string {
  const e = escapeHtml;
  const upnp = status.frontEnds['upnp-igd'] as { externalAddress?: string | null } | undefined;
  const rows = mappings
    .map(
      (m) => `<tr>
<td>${e(m.protocol)}</td><td>${m.externalPort}</td><td>${e(m.internalClient)}:${m.internalPort}</td><td>${e(m.remoteHost || 'any')}</td>
<td>${m.leaseSecondsLeft === null ? 'permanent' : `${m.leaseSecondsLeft} s`}</td><td>${e(m.source)}</td><td>${e(m.createdBy)}</td><td>${e(m.description)}</td>
<td><form method="post" action="/delete"><input type="hidden" name="token" value="${e(token)}"><input type="hidden" name="protocol" value="${e(m.protocol)}"><input type="hidden" name="externalPort" value="${m.externalPort}"><input type="hidden" name="remoteHost" value="${e(m.remoteHost)}"><button type="submit" aria-label="delete ${e(m.protocol)} ${m.externalPort}">Delete</button></form></td>
</tr>`,
    )
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>upnpd</title>
<style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}th{background:#eee}.notice{background:#ffd;padding:.5em}</style>
</head><body>
<h1>upnpd</h1>
<p>Version ${e(status.version)}, backend ${e(status.backend)}${status.dryRun ? ' (dry-run)' : ''}, up ${status.uptimeSeconds} s, external address ${e(upnp?.externalAddress ?? 'none')}.</p>
${notice ? `<p class="notice">${e(notice)}</p>` : ''}
<h2>Port mappings (${mappings.length})</h2>
${mappings.length === 0 ? '<p>No mappings.</p>' : `<table><thead><tr><th>Protocol</th><th>External port</th><th>Internal client</th><th>Remote host</th><th>Lease left</th><th>Front-end</th><th>Made by</th><th>Description</th><th></th></tr></thead><tbody>\n${rows}\n</tbody></table>`}
</body></html>
`;
}
