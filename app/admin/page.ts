import type { DaemonStatus } from '../../core/daemon.js';
import type { Listing } from '../control/protocol.js';

const ESCAPES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

/** The status page: the daemon, its mappings and its pinholes, each with a delete button (a form POST with the page's token). */
export function statusPage(status: DaemonStatus, { mappings, pinholes }: Listing, token: string, notice?: string): string {
  const e = escapeHtml;
  const deleteForm = (fields: Readonly<Record<string, string | number>>, label: string) =>
    `<form method="post" action="/delete"><input type="hidden" name="token" value="${e(token)}">${Object.entries(fields)
      .map(([name, value]) => `<input type="hidden" name="${name}" value="${e(String(value))}">`)
      .join('')}<button type="submit" aria-label="${e(label)}">Delete</button></form>`;
  const rows = mappings
    .map(
      (m) => `<tr>
<td>${e(m.protocol)}</td><td>${m.externalPort}</td><td>${e(m.internalClient)}:${m.internalPort}</td><td>${e(m.remoteHost || 'any')}</td>
<td>${m.leaseSecondsLeft === null ? 'permanent' : `${m.leaseSecondsLeft} s`}</td><td>${e(m.source)}</td><td>${e(m.createdBy)}</td><td>${e(m.description)}</td>
<td>${deleteForm({ protocol: m.protocol, externalPort: m.externalPort, remoteHost: m.remoteHost }, `delete ${m.protocol} ${m.externalPort}`)}</td>
</tr>`,
    )
    .join('\n');
  const pinholeRows = pinholes
    .map(
      (p) => `<tr>
<td>${p.uniqueId}</td><td>${e(p.protocol)}</td><td>${e(p.internalClient)}</td><td>${p.internalPort}</td><td>${e(p.remoteHost || 'any')}</td><td>${p.remotePort === 0 ? 'any' : p.remotePort}</td>
<td>${p.leaseSecondsLeft} s</td><td>${e(p.source)}</td><td>${e(p.createdBy)}</td>
<td>${deleteForm({ uniqueId: p.uniqueId }, `delete pinhole ${p.uniqueId}`)}</td>
</tr>`,
    )
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>upnpd</title>
<style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}th{background:#eee}.notice{background:#ffd;padding:.5em}</style>
</head><body>
<h1>upnpd</h1>
<p>Version ${e(status.version)}, backend ${e(status.backend)}${status.dryRun ? ' (dry-run)' : ''}, up ${status.uptimeSeconds} s, external address ${e(status.externalAddress ?? 'none')}.</p>
${notice ? `<p class="notice">${e(notice)}</p>` : ''}
<h2>Port mappings (${mappings.length})</h2>
${mappings.length === 0 ? '<p>No mappings.</p>' : `<table><thead><tr><th>Protocol</th><th>External port</th><th>Internal client</th><th>Remote host</th><th>Lease left</th><th>Front-end</th><th>Made by</th><th>Description</th><th></th></tr></thead><tbody>\n${rows}\n</tbody></table>`}
<h2>IPv6 pinholes (${pinholes.length})</h2>
${pinholes.length === 0 ? '<p>No pinholes.</p>' : `<table><thead><tr><th>UniqueID</th><th>Protocol</th><th>Internal client</th><th>Internal port</th><th>Remote host</th><th>Remote port</th><th>Lease left</th><th>Front-end</th><th>Made by</th><th></th></tr></thead><tbody>\n${pinholeRows}\n</tbody></table>`}
</body></html>
`;
}
