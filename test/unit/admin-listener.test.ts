import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { DESCRIPTION_URL, addPortMappingArgs, freePort, killStartedDaemons, soapAction, startUpnpd, type UpnpdRun } from '../support/upnpd-process.js';
import { describeRequiring, missingPrograms } from '../support/requirements.js';
import { checkAdminListen } from '../../app/admin/server.js';

// The admin listener of a real daemon (dry-run on loopback): /metrics, the status page, its delete buttons.

const scratch = mkdtempSync(join(tmpdir(), 'upnpd-admin-'));

function mapping(port: number): Record<string, string | number> {
  return addPortMappingArgs(port, `&lt;b&gt;game ${port}&lt;/b&gt;`);
}

async function daemonWithAdmin(): Promise<{ run: UpnpdRun; url: string; admin: string }> {
  const port = await freePort();
  const run = startUpnpd(['--dry-run', '--admin-listen', `127.0.0.1:${port}`, '--runtime-dir', join(scratch, String(port))], { lifetimeMs: 60_000 });
  const url = await run.waitFor(DESCRIPTION_URL, 15_000);
  await run.waitFor(/admin listener/, 10_000);
  return { run, url, admin: `http://127.0.0.1:${port}` };
}

/** A request under another Host header (fetch does not let one set it): a DNS-rebinding page's, or a browser's that opened the page by another name. */
function requestWithHost(
  url: string,
  host: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number | undefined; location: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'GET', headers: { ...options.headers, host } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode, location: res.headers.location, body }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();

afterEach(() => killStartedDaemons());
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('the admin listener', () => {
  it('serves Prometheus metrics: mappings, requests by action and result, backend apply latency', async () => {
    const { url, admin } = await daemonWithAdmin();
    await soapAction(url, 'AddPortMapping', mapping(9001));
    await soapAction(url, 'DeletePortMapping', { NewRemoteHost: '', NewExternalPort: 9999, NewProtocol: 'TCP' });
    const metrics = await (await fetch(`${admin}/metrics`)).text();
    expect(metrics).toContain('upnpd_mappings{protocol="TCP",source="upnp-igd:2"} 1');
    expect(metrics).toContain('upnpd_requests_total{action="AddPortMapping",result="ok"} 1');
    expect(metrics).toContain('upnpd_requests_total{action="DeletePortMapping",result="714"} 1');
    expect(metrics).toMatch(/upnpd_backend_apply_seconds_count\{outcome="applied"\} 1/);
    expect(metrics).toMatch(/^upnpd_info\{version="[^"]+",backend="dry-run"\} 1$/m);
    expect(metrics).toMatch(/^upnpd_gena_subscriptions 0$/m);
    expect(metrics).toMatch(/^upnpd_ssdp_queries_total \d+$/m);
    expect(metrics).toMatch(/^upnpd_persistence_ok 0$/m);
    // A refused request: external port 22 is reserved.
    await soapAction(url, 'AddPortMapping', { ...mapping(9003), NewExternalPort: 22 });
    expect(await (await fetch(`${admin}/metrics`)).text()).toMatch(/^upnpd_refusals_total\{policy="reserved-ports",rule="[^"]+"\} [1-9]/m);
  });

  it('counts actions a client makes up under one label: a LAN host cannot add series (or entries in memory) per name', async () => {
    const { url, admin } = await daemonWithAdmin();
    for (let i = 0; i < 20; i++) expect((await soapAction(url, `Bogus${i}`)).status).toBe(500);
    // Actions the service has keep their own label.
    await soapAction(url, 'GetExternalIPAddress');
    const metrics = await (await fetch(`${admin}/metrics`)).text();
    expect(metrics).not.toContain('Bogus');
    expect(metrics).toContain('upnpd_requests_total{action="unknown",result="401"} 20');
    expect(metrics).toContain('upnpd_requests_total{action="GetExternalIPAddress",result="ok"} 1');
  });

  it('deletes only with the page token, from its own origin, under its own Host name', async () => {
    const { url, admin } = await daemonWithAdmin();
    await soapAction(url, 'AddPortMapping', mapping(9002));
    const page = await (await fetch(`${admin}/`)).text();
    expect(page).toContain('&lt;b&gt;game 9002&lt;/b&gt;');
    const token = /name="token" value="([0-9a-f]+)"/.exec(page)?.[1] ?? '';
    const headers = { 'content-type': 'application/x-www-form-urlencoded' };
    const fields = { protocol: 'TCP', externalPort: '9002', remoteHost: '' };
    const post = (extra: Record<string, string>, body: Record<string, string>) =>
      fetch(`${admin}/delete`, { method: 'POST', headers: { ...headers, ...extra }, body: form(body), redirect: 'manual' });
    expect((await post({}, { ...fields, token: 'f'.repeat(48) })).status).toBe(403);
    expect((await post({ origin: 'http://evil.example' }, { ...fields, token })).status).toBe(403);
    expect((await post({ 'sec-fetch-site': 'cross-site' }, { ...fields, token })).status).toBe(403);
    expect((await requestWithHost(`${admin}/`, 'rebound.example:80')).status).toBe(421);
    expect(await (await fetch(`${admin}/`)).text()).toContain('game 9002');
    const ok = await post({ origin: admin }, { ...fields, token });
    expect(ok.status).toBe(303);
    const after = await (await fetch(new URL(ok.headers.get('location')!, admin))).text();
    expect(after).not.toContain('game 9002');
    expect(after).toContain('<p class="notice">Deleted.</p>');
    // Again: that mapping is gone; the page says nothing was deleted.
    const again = await post({ origin: admin }, { ...fields, token });
    expect(await (await fetch(new URL(again.headers.get('location')!, admin))).text()).toContain('<p class="notice">Nothing was deleted');
  });

  it('deletes from the page opened as http://localhost:PORT/ (a Host it serves), not only from http://127.0.0.1:PORT/', async () => {
    const { url, admin } = await daemonWithAdmin();
    await soapAction(url, 'AddPortMapping', mapping(9004));
    const byName = `localhost:${new URL(admin).port}`;
    const page = await requestWithHost(`${admin}/`, byName);
    expect(page.body).toContain('game 9004');
    const token = /name="token" value="([0-9a-f]+)"/.exec(page.body)?.[1] ?? '';
    // What the browser sends for the page's own form there: its Origin is http://localhost:PORT.
    const deleted = await requestWithHost(`${admin}/delete`, byName, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: `http://${byName}`, 'sec-fetch-site': 'same-origin' },
      body: form({ token, protocol: 'TCP', externalPort: '9004', remoteHost: '' }),
    });
    expect(deleted.status).toBe(303);
    expect(deleted.location).toBe('/?deleted=1');
    expect((await requestWithHost(`${admin}/`, byName)).body).not.toContain('game 9004');
    // That name is no way in for another origin.
    await soapAction(url, 'AddPortMapping', mapping(9004));
    const crossSite = await requestWithHost(`${admin}/delete`, byName, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'http://localhost:1', 'sec-fetch-site': 'same-site' },
      body: form({ token, protocol: 'TCP', externalPort: '9004', remoteHost: '' }),
    });
    expect(crossSite.status).toBe(403);
  });

  it('refuses every address (0.0.0.0, ::), where no request could name the listener in its Host', () => {
    expect(() => checkAdminListen('0.0.0.0:9191', true)).toThrow(/0\.0\.0\.0 is every address/);
    expect(() => checkAdminListen('[::]:9191', true)).toThrow(/:: is every address/);
    expect(() => checkAdminListen('192.0.2.1:9191', true)).not.toThrow();
    expect(() => checkAdminListen('127.0.0.1:9191', false)).not.toThrow();
  });

  it('refuses a non-loopback address unless the config allows it (exit 2, before anything starts)', async () => {
    const run = startUpnpd(['--dry-run', '--admin-listen', '192.0.2.1:9191'], { lifetimeMs: 20_000 });
    expect(await run.exitCode(15_000)).toBe(2);
    expect(run.output()).toContain('admin.listen: 192.0.2.1 is not a loopback address');
  });
});

describeRequiring('the status page in a browser', missingPrograms(['chromium']), () => {
  it('shows the mappings; a click on Delete removes one', async () => {
    const { url, admin } = await daemonWithAdmin();
    for (const port of [9011, 9012]) await soapAction(url, 'AddPortMapping', mapping(port));
    const browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    try {
      const tab = await browser.newPage();
      await tab.goto(`${admin}/`);
      expect(await tab.locator('tbody tr').count()).toBe(2);
      expect(await tab.locator('tbody').innerText()).toContain('<b>game 9011</b>');
      await tab.getByRole('button', { name: 'delete TCP 9011' }).click();
      await tab.waitForURL(/deleted=1/);
      expect(await tab.locator('tbody tr').count()).toBe(1);
      expect(await tab.locator('tbody').innerText()).not.toContain('9011');
    } finally {
      await browser.close();
    }
  });
});
