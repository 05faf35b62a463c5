import { describe, expect, it } from 'vitest';
import {
  MINIUPNPD_IPTABLES,
  MINIUPNPD_NFT,
  legacyFirewallScript,
  miniupnpdConfig,
  miniupnpdLeaseFile,
  miniupnpdNftSkeleton,
} from '../daemons/miniupnpd-config.js';

const settings = {
  wanInterface: 'wan0',
  lanInterface: 'br-lan',
  lanSubnet: '192.168.77.0/24',
  httpPort: 49152,
  stunHost: '203.0.113.2',
  stunPort: 3478,
  uuid: '8e2c7e54-3f1a-4a57-9a43-4c1d8e2b7f10',
  leaseFile: '/tmp/x/leases',
};

describe('miniupnpd.conf', () => {
  const lines = miniupnpdConfig(settings).split('\n');

  it.each([
    'ext_ifname=wan0',
    'listening_ip=br-lan',
    'http_port=49152',
    'ext_perform_stun=yes',
    'ext_stun_host=203.0.113.2',
    'ext_stun_port=3478',
    'secure_mode=yes',
    'enable_natpmp=yes',
    'lease_file=/tmp/x/leases',
    'uuid=8e2c7e54-3f1a-4a57-9a43-4c1d8e2b7f10',
    'upnp_table_name=filter',
    'upnp_nat_table_name=filter',
    'allow 1024-65535 192.168.77.0/24 1024-65535',
  ])('has %s', (line) => {
    expect(lines).toContain(line);
  });

  it('denies everything the allow rule does not cover, after it (first match wins)', () => {
    expect(lines.indexOf('deny 0-65535 0.0.0.0/0 0-65535')).toBeGreaterThan(lines.indexOf('allow 1024-65535 192.168.77.0/24 1024-65535'));
  });

  it('sets no ext_ip: miniupnpd refuses it together with ext_perform_stun', () => {
    expect(lines.some((line) => line.startsWith('ext_ip='))).toBe(false);
  });
});

describe('miniupnpd nftables skeleton', () => {
  const script = miniupnpdNftSkeleton(settings);

  it('creates the chains miniupnpd fills, each jumped to from a hooked chain', () => {
    for (const chain of [MINIUPNPD_NFT.forwardChain, MINIUPNPD_NFT.natChain, MINIUPNPD_NFT.postroutingChain]) {
      expect(script).toContain(`chain ${chain} {`);
      expect(script).toContain(`jump ${chain}`);
    }
    expect(script.startsWith(`table inet filter {`)).toBe(true);
  });

  it('accepts replies and LAN-to-WAN traffic before the per-mapping rules, and drops the rest', () => {
    const forward = script.slice(script.indexOf('chain forward {'), script.indexOf('}', script.indexOf('chain forward {')));
    expect(forward).toContain('policy drop;');
    expect(forward.indexOf('ct state established,related accept')).toBeLessThan(forward.indexOf(`jump ${MINIUPNPD_NFT.forwardChain}`));
    expect(forward).toContain('iifname "br-lan" oifname "wan0" accept');
  });
});

describe('miniupnpd-iptables', () => {
  it('gets the same policy without the nftables table options (it keeps its default chains)', () => {
    const iptables = miniupnpdConfig(settings, 'iptables').split('\n');
    expect(iptables.filter((line) => !line.startsWith('upnp_'))).toEqual(
      miniupnpdConfig(settings)
        .split('\n')
        .filter((line) => !line.startsWith('upnp_')),
    );
    expect(iptables.some((line) => line.startsWith('upnp_'))).toBe(false);
  });

  it("has the admin's x_tables forward filter, and miniupnpd's chains jumped to as iptables_init.sh adds them", () => {
    const admin = legacyFirewallScript(settings, false);
    expect(admin).toContain(':FORWARD DROP [0:0]');
    expect(admin).toContain('-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT');
    expect(admin).toContain('-A FORWARD -i br-lan -o wan0 -j ACCEPT');
    expect(admin).not.toContain(MINIUPNPD_IPTABLES.chain);
    const withMiniupnpd = legacyFirewallScript(settings, true);
    for (const jump of [
      '-A FORWARD -i wan0 ! -o wan0 -j MINIUPNPD',
      '-A PREROUTING -i wan0 -j MINIUPNPD',
      `-A POSTROUTING -o wan0 -j ${MINIUPNPD_IPTABLES.postroutingChain}`,
    ]) {
      expect(withMiniupnpd).toContain(jump);
    }
    // Three tables, each committed.
    expect(withMiniupnpd.match(/^COMMIT$/gm)).toHaveLength(3);
  });
});

describe('miniupnpd lease file', () => {
  it('writes one PROTO:EPORT:IADDR:IPORT:EXPIRY:DESC line per mapping', () => {
    const file = miniupnpdLeaseFile([
      { port: 20000, client: '192.168.77.10', expiresAtUnix: 1795518806, description: 'bench' },
      { port: 20001, client: '192.168.77.10', expiresAtUnix: 1795518806, description: 'bench' },
    ]);
    expect(file).toBe('TCP:20000:192.168.77.10:20000:1795518806:bench\nTCP:20001:192.168.77.10:20001:1795518806:bench\n');
  });
});
