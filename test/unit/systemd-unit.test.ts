import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, expect, it } from 'vitest';
import { describeRequiring, missingPrograms } from '../support/requirements.js';

// contrib/systemd/upnpd.service: verified by systemd itself, and the readiness it relies on.

const REPO = join(import.meta.dirname, '..', '..');
const UNIT = readFileSync(join(REPO, 'contrib', 'systemd', 'upnpd.service'), 'utf8');
const READY_WAIT_MS = 15_000;
const scratch = mkdtempSync(join(tmpdir(), 'upnpd-systemd-'));

/** `systemd-analyze verify` of the unit with ExecStart pointing at this checkout's command (it must exist). */
async function verify(unitText: string): Promise<{ exitCode: number; complaints: string }> {
  const file = join(scratch, 'upnpd.service');
  writeFileSync(file, unitText.replace('ExecStart=upnpd ', `ExecStart=${join(REPO, 'bin', 'upnpd.js')} `));
  const r = await execa('systemd-analyze', ['verify', file], { reject: false });
  return { exitCode: r.exitCode ?? -1, complaints: `${r.stdout}${r.stderr}`.trim() };
}

describeRequiring('the systemd unit', missingPrograms(['systemd-analyze', 'systemd-notify', 'systemd-path', 'python3']), () => {
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it('passes systemd-analyze verify without a single complaint', async () => {
    expect(await verify(UNIT)).toEqual({ exitCode: 0, complaints: '' });
  });

  it('(the check above can fail: an unknown key is a complaint)', async () => {
    const { complaints } = await verify(UNIT.replace('[Service]', '[Service]\nNoSuchSetting=yes'));
    expect(complaints).toMatch(/Unknown key 'NoSuchSetting'/);
  });

  it('starts the upnpd command wherever `npm link` put it: /usr/local/bin (Debian nodejs) or /usr/bin (NodeSource)', async () => {
    const program = /^ExecStart=(\S+)/m.exec(UNIT)?.[1];
    // A name without a slash is looked up in systemd's own search path.
    expect(program).toBe('upnpd');
    const searched = (await execa('systemd-path', ['search-binaries-default'])).stdout.trim().split(':');
    expect(searched).toEqual(expect.arrayContaining(['/usr/local/bin', '/usr/bin']));
  });

  it('runs the daemon hardened, with the directories and capabilities it needs and no more', () => {
    const settings = UNIT.split('\n').filter((line) => /^\w+=/.test(line));
    for (const setting of [
      'Type=notify',
      'NotifyAccess=all',
      'ExecReload=/bin/kill -HUP $MAINPID',
      'StateDirectory=upnpd',
      'RuntimeDirectory=upnpd',
      'ConfigurationDirectory=upnpd',
      'CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW',
      'AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW',
      'ProtectSystem=strict',
      'NoNewPrivileges=yes',
    ]) {
      expect(settings).toContain(setting);
    }
  });

  it('tells systemd it is ready (READY=1 on NOTIFY_SOCKET) once it serves', async () => {
    const socket = join(scratch, 'notify.sock');
    // A datagram Unix socket stands in for systemd's (Node has none): prints what it receives.
    const receiver = spawn('python3', [
      '-c',
      `import socket,sys\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.bind(${JSON.stringify(socket)})\nprint('bound',flush=True)\ns.settimeout(${READY_WAIT_MS / 1000})\nprint(s.recv(4096).decode(),flush=True)`,
    ]);
    let received = '';
    receiver.stdout.setEncoding('utf8').on('data', (chunk: string) => (received += chunk));
    const daemon = spawn(process.execPath, [join(REPO, 'bin', 'upnpd.js'), '--dry-run', '--log-level', 'warn'], {
      env: { ...process.env, NOTIFY_SOCKET: socket },
      stdio: 'ignore',
    });
    try {
      const deadline = Date.now() + READY_WAIT_MS;
      while (Date.now() < deadline && !/READY=1/.test(received)) await new Promise((resolve) => setTimeout(resolve, 100));
      expect(received).toMatch(/READY=1/);
      expect(received).toMatch(/STATUS=serving/);
    } finally {
      daemon.kill('SIGKILL');
      receiver.kill('SIGKILL');
    }
  });
});
