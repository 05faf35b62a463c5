import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { WANIP, addArgs, argsXml, envelope, rawRequest, soap, startIgd, type IgdFixture } from './fixture.js';

/**
 * The HTTP side of control: SOAPACTION in every form clients send, HTTP/1.0 and 1.1, Expect:
 * 100-continue, body and XML limits, Host checking (DNS rebinding), peers outside the LAN, and the
 * connection limits that stop slowloris.
 */

const CONTROL = '/igd2/WANIPConn/control';
const SERVICE = `${WANIP}:2`;

function postHead(port: number, body: string, extra: readonly string[] = [], requestLine = `POST ${CONTROL} HTTP/1.1`): string {
  return [requestLine, `Host: 127.0.0.1:${port}`, 'Content-Type: text/xml', `Content-Length: ${Buffer.byteLength(body)}`, ...extra].join('\r\n');
}

const GET_IP = envelope(SERVICE, 'GetExternalIPAddress', '');

describe('SOAP over HTTP', () => {
  let f: IgdFixture;
  beforeAll(async () => {
    f = await startIgd({ httpLimits: { headersTimeoutMs: 300, idleTimeoutMs: 500, maxConnections: 4 } });
  });
  beforeEach(async () => {
    await f.reset();
  });
  afterAll(async () => {
    await f.close();
  });

  describe('SOAPACTION', () => {
    const accepted = [
      ['quoted (UDA)', `SOAPAction: "${SERVICE}#GetExternalIPAddress"`],
      ['unquoted', `SOAPAction: ${SERVICE}#GetExternalIPAddress`],
      ['single-quoted', `SOAPAction: '${SERVICE}#GetExternalIPAddress'`],
      ['upper-case name', `SOAPACTION: "${SERVICE}#GetExternalIPAddress"`],
      ['libtorrent style (Soapaction, no space)', `Soapaction:"${SERVICE}#GetExternalIPAddress"`],
      ['with surrounding blanks', `soapaction:   "${SERVICE}#GetExternalIPAddress"  `],
    ] as const;
    it.each(accepted)('accepts it %s', async (_, header) => {
      const result = await soap(f, 'GetExternalIPAddress', {}, { soapActionHeader: header });
      expect(result.status).toBe(200);
      expect(result.values).toEqual({ NewExternalIPAddress: '203.0.113.7' });
    });

    const refusedAsInvalidAction = [
      ['a lone single quote (CVE-2026-5720)', "SOAPAction: '"],
      ['a lone double quote', 'SOAPAction: "'],
      ['unbalanced quotes', `SOAPAction: "${SERVICE}#GetExternalIPAddress'`],
      ['no #', `SOAPAction: "${SERVICE}"`],
      ['an unknown URN', 'SOAPAction: "urn:example-com:service:Thing:1#GetExternalIPAddress"'],
      ['a quote inside', `SOAPAction: "${SERVICE}#Get"ExternalIPAddress"`],
    ] as const;
    it.each(refusedAsInvalidAction)('answers 401 to %s', async (_, header) => {
      const result = await soap(f, 'GetExternalIPAddress', {}, { soapActionHeader: header });
      expect({ status: result.status, errorCode: result.errorCode }).toEqual({ status: 500, errorCode: 401 });
    });

    it.each([
      ['missing', null],
      ['empty', 'SOAPAction: '],
      ['over 256 characters', `SOAPAction: "${SERVICE}#${'A'.repeat(300)}"`],
    ] as const)('answers HTTP 400 when it is %s (a plain form POST cannot drive the gateway)', async (_, header) => {
      const result = await soap(f, 'AddPortMapping', addArgs(), { soapActionHeader: header });
      expect(result.status).toBe(400);
      expect(f.mappings.size).toBe(0);
    });
  });

  describe('HTTP versions and framing', () => {
    it('serves HTTP/1.0 with a Content-Length and closes the connection', async () => {
      const result = await soap(f, 'GetExternalIPAddress', {}, { http10: true });
      expect(result.status).toBe(200);
      expect(result.headers['content-length']).toBe(String(Buffer.byteLength(result.body)));
      expect(result.headers['transfer-encoding']).toBeUndefined();
      expect(result.headers['connection']).toBe('close');
    });

    it('serves HTTP/1.0 without a Host header', async () => {
      const result = await rawRequest(
        f.port,
        [`POST ${CONTROL} HTTP/1.0`, `Content-Length: ${GET_IP.length}`, `SOAPAction: "${SERVICE}#GetExternalIPAddress"`].join('\r\n'),
        GET_IP,
      );
      expect(result.status).toBe(200);
    });

    it('never sends a chunked response, and sets the SERVER and EXT headers', async () => {
      const result = await soap(f, 'GetExternalIPAddress');
      expect(result.statusLine).toBe('HTTP/1.1 200 OK');
      expect(result.headers['transfer-encoding']).toBeUndefined();
      expect(result.headers['content-length']).toBe(String(Buffer.byteLength(result.body)));
      expect(result.headers['content-type']).toBe('text/xml; charset="utf-8"');
      expect(result.headers['ext']).toBe('');
      expect(result.headers['server']).toMatch(/^Linux\/\S+ UPnP\/1\.1 upnpd\/\d+\.\d+\.\d+$/);
    });

    it('sends one SERVER header with every response: answers, faults, refusals and documents', async () => {
      const responses = [
        await soap(f, 'GetExternalIPAddress'),
        await soap(f, 'GetGenericPortMappingEntry', { NewPortMappingIndex: 0 }),
        await rawRequest(f.port, `GET /rootDesc.xml HTTP/1.1\r\nHost: 127.0.0.1:${f.port}`),
        await rawRequest(f.port, `GET /nothing-here HTTP/1.1\r\nHost: 127.0.0.1:${f.port}`),
        await rawRequest(f.port, `GET ${CONTROL} HTTP/1.1\r\nHost: 127.0.0.1:${f.port}`),
        await rawRequest(f.port, `GET /rootDesc.xml HTTP/1.1\r\nHost: 10.9.9.9:${f.port}`),
      ];
      expect(responses.map((r) => r.status)).toEqual([200, 500, 200, 404, 405, 403]);
      for (const response of responses) {
        expect(response.headerLines.filter((line) => /^server:/i.test(line))).toEqual([expect.stringMatching(/^Server: Linux\/\S+ UPnP\/1\.1 upnpd\//)]);
      }
    });

    it('answers Expect: 100-continue with 100 Continue, then the response', async () => {
      const body = envelope(SERVICE, 'GetExternalIPAddress', '');
      const head = postHead(f.port, body, [`SOAPAction: "${SERVICE}#GetExternalIPAddress"`, 'Expect: 100-continue']);
      const result = await rawRequest(f.port, head, body, { waitForContinue: true });
      expect(result.continues).toBe(1);
      expect(result.status).toBe(200);
    });

    it('refuses an oversized body announced with Expect: 100-continue before the client sends it (413)', async () => {
      const head = postHead(f.port, 'x'.repeat(20_000), [`SOAPAction: "${SERVICE}#AddPortMapping"`, 'Expect: 100-continue']);
      const result = await rawRequest(f.port, head, '', { waitForContinue: true });
      expect(result.continues).toBe(0);
      expect(result.status).toBe(413);
    });

    it('refuses a Content-Length over 16 KiB with 413', async () => {
      const padding = `<!-- ${'x'.repeat(17 * 1024)} -->`;
      const body = envelope(SERVICE, 'AddPortMapping', argsXml(addArgs()) + padding);
      const result = await rawRequest(f.port, postHead(f.port, body, [`SOAPAction: "${SERVICE}#AddPortMapping"`]), body);
      expect(result.status).toBe(413);
      expect(f.mappings.size).toBe(0);
    });

    it('refuses a chunked body that grows over 16 KiB with 413', async () => {
      const chunk = 'x'.repeat(4096);
      const chunks = Array.from({ length: 5 }, () => `${chunk.length.toString(16)}\r\n${chunk}\r\n`).join('') + '0\r\n\r\n';
      const head = [`POST ${CONTROL} HTTP/1.1`, `Host: 127.0.0.1:${f.port}`, 'Transfer-Encoding: chunked', `SOAPAction: "${SERVICE}#AddPortMapping"`].join(
        '\r\n',
      );
      const result = await rawRequest(f.port, head, chunks);
      expect(result.status).toBe(413);
    });

    it('refuses headers over 8 KiB with 431', async () => {
      const head = postHead(f.port, GET_IP, [`SOAPAction: "${SERVICE}#GetExternalIPAddress"`, `X-Padding: ${'x'.repeat(9 * 1024)}`]);
      expect((await rawRequest(f.port, head, GET_IP)).status).toBe(431);
    });

    it('accepts a body of exactly 16 KiB', async () => {
      const withComment = (n: number) => GET_IP.replace('<s:Body>', `<s:Header><!--${'x'.repeat(n)}--></s:Header><s:Body>`);
      const body = withComment(16 * 1024 - Buffer.byteLength(withComment(0)));
      expect(Buffer.byteLength(body)).toBe(16 * 1024);
      const result = await rawRequest(f.port, postHead(f.port, body, [`SOAPAction: "${SERVICE}#GetExternalIPAddress"`]), body);
      expect(result.status).toBe(200);
    });
  });

  describe('hostile XML', () => {
    const cases = [
      ['a DOCTYPE', `<?xml version="1.0"?><!DOCTYPE s:Envelope [<!ENTITY x "y">]>${GET_IP.slice(GET_IP.indexOf('<s:Envelope'))}`],
      [
        'a billion-laughs document',
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>' +
          envelope(SERVICE, 'GetExternalIPAddress', '<x>&lol2;</x>').slice(22),
      ],
      ['deep nesting', envelope(SERVICE, 'GetExternalIPAddress', `${'<a>'.repeat(50)}${'</a>'.repeat(50)}`)],
      ['text that is not XML', 'this is not xml at all'],
      ['an envelope without a Body', '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"></s:Envelope>'],
      ['two actions in one Body', GET_IP.replace('</s:Body>', '<u:GetStatusInfo xmlns:u="x"/></s:Body>')],
      ['a prototype-polluting element name', envelope(SERVICE, 'GetExternalIPAddress', '<__proto__><polluted>1</polluted></__proto__>')],
    ] as const;
    it.each(cases)('answers 400 to %s', async (_, body) => {
      const result = await rawRequest(f.port, postHead(f.port, body, [`SOAPAction: "${SERVICE}#GetExternalIPAddress"`]), body);
      expect(result.status).toBe(400);
      expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    });
  });

  describe('Host header (DNS rebinding)', () => {
    it.each([
      ['a name', (port: number) => `upnp.attacker.example:${port}`, 400],
      ['a name without port', () => 'localhost', 400],
      ['another address', (port: number) => `10.0.0.1:${port}`, 403],
      ['our address with another port', (port: number) => `127.0.0.1:${port + 1}`, 403],
      ['our address without the port', () => '127.0.0.1', 403],
    ] as const)('refuses %s', async (_, host, status) => {
      const head = [
        `POST ${CONTROL} HTTP/1.1`,
        `Host: ${host(f.port)}`,
        `Content-Length: ${GET_IP.length}`,
        `SOAPAction: "${SERVICE}#GetExternalIPAddress"`,
      ].join('\r\n');
      const result = await rawRequest(f.port, head, GET_IP);
      expect(result.status).toBe(status);
      expect(result.headers['connection']).toBe('close');
    });

    it.each([
      ['ours, then another', (port: number) => [`Host: 127.0.0.1:${port}`, 'Host: upnp.attacker.example']],
      ['ours twice', (port: number) => [`Host: 127.0.0.1:${port}`, `host: 127.0.0.1:${port}`]],
    ] as const)('refuses two Host lines (%s) with 400 (RFC 9112 §3.2)', async (_, hosts) => {
      const head = [`POST ${CONTROL} HTTP/1.1`, ...hosts(f.port), `Content-Length: ${GET_IP.length}`, `SOAPAction: "${SERVICE}#GetExternalIPAddress"`].join(
        '\r\n',
      );
      expect((await rawRequest(f.port, head, GET_IP)).status).toBe(400);
    });

    it('refuses HTTP/1.1 without Host', async () => {
      const head = [`POST ${CONTROL} HTTP/1.1`, `Content-Length: ${GET_IP.length}`, `SOAPAction: "${SERVICE}#GetExternalIPAddress"`].join('\r\n');
      const result = await rawRequest(f.port, head, GET_IP);
      expect(result.status).toBe(400);
      expect(result.headers['connection']).toBe('close');
    });

    it('answers HTTP/1.0 without Host', async () => {
      const head = [`POST ${CONTROL} HTTP/1.0`, `Content-Length: ${GET_IP.length}`, `SOAPAction: "${SERVICE}#GetExternalIPAddress"`].join('\r\n');
      expect((await rawRequest(f.port, head, GET_IP)).status).toBe(200);
    });

    it('answers an Expect other than 100-continue with 417 (RFC 9110 §10.1.1)', async () => {
      const head = [
        `POST ${CONTROL} HTTP/1.1`,
        `Host: 127.0.0.1:${f.port}`,
        `Content-Length: ${GET_IP.length}`,
        `SOAPAction: "${SERVICE}#GetExternalIPAddress"`,
        'Expect: 200-ok',
      ].join('\r\n');
      expect((await rawRequest(f.port, head, GET_IP)).status).toBe(417);
    });
  });

  describe('requests a browser can send (Filet-O-Firewall, design §10)', () => {
    const addHead = (body: string, headers: readonly string[]) =>
      [
        `POST ${CONTROL} HTTP/1.1`,
        `Host: 127.0.0.1:${f.port}`,
        `Content-Length: ${Buffer.byteLength(body)}`,
        `SOAPAction: "${SERVICE}#AddPortMapping"`,
        ...headers,
      ].join('\r\n');
    const add = envelope(SERVICE, 'AddPortMapping', argsXml(addArgs()));

    it.each(['application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'text/plain', 'text/plain; charset=utf-8', 'application/json'])(
      'refuses Content-Type %s with 415, and maps nothing',
      async (type) => {
        const result = await rawRequest(f.port, addHead(add, [`Content-Type: ${type}`]), add);
        expect(result.status).toBe(415);
        expect(result.headers['connection']).toBe('close');
        expect(f.mappings.size).toBe(0);
      },
    );

    it.each([
      ['text/xml; charset="utf-8"'],
      ['text/xml'],
      ['TEXT/XML;charset=utf-8'],
      ['text/xml charset="utf-8"'],
      ['application/xml'],
      ['application/soap+xml'],
      [undefined],
    ])('accepts Content-Type %s', async (type) => {
      const result = await rawRequest(f.port, addHead(add, type === undefined ? [] : [`Content-Type: ${type}`]), add);
      expect(result.status).toBe(200);
      expect(f.mappings.size).toBe(1);
    });

    it.each([
      ['another site', () => 'http://router.attacker.example'],
      ['an opaque origin', () => 'null'],
      ['our address on another port', (port: number) => `http://127.0.0.1:${port + 1}`],
      ['our address over https', (port: number) => `https://127.0.0.1:${port}`],
    ] as const)('refuses an Origin of %s with 403, and maps nothing', async (_, origin) => {
      const result = await rawRequest(f.port, addHead(add, ['Content-Type: text/xml', `Origin: ${origin(f.port)}`]), add);
      expect(result.status).toBe(403);
      expect(f.mappings.size).toBe(0);
    });

    it('accepts an Origin that is our own address and port', async () => {
      const result = await rawRequest(f.port, addHead(add, ['Content-Type: text/xml', `Origin: http://127.0.0.1:${f.port}`]), add);
      expect(result.status).toBe(200);
      expect(f.mappings.size).toBe(1);
    });
  });

  describe('routing', () => {
    it.each([
      ['GET on a control URL', `GET ${CONTROL} HTTP/1.1`, 405, 'POST'],
      ['PUT on a description', 'PUT /rootDesc.xml HTTP/1.1', 405, 'GET, HEAD'],
      ['POST on an event URL', 'POST /igd2/WANIPConn/events HTTP/1.1', 405, 'SUBSCRIBE, UNSUBSCRIBE'],
      ['an unknown path', 'GET /cgi-bin/luci HTTP/1.1', 404, undefined],
      ['a traversal attempt', 'GET /../../etc/passwd HTTP/1.1', 404, undefined],
    ] as const)('answers %s', async (_, requestLine, status, allow) => {
      const result = await rawRequest(f.port, `${requestLine}\r\nHost: 127.0.0.1:${f.port}\r\nContent-Length: 0`);
      expect(result.status).toBe(status);
      expect(result.headers['allow']).toBe(allow);
    });

    it('serves HEAD on a description with the length of its GET', async () => {
      const get = await rawRequest(f.port, `GET /rootDesc.xml HTTP/1.1\r\nHost: 127.0.0.1:${f.port}`);
      const head = await rawRequest(f.port, `HEAD /rootDesc.xml HTTP/1.1\r\nHost: 127.0.0.1:${f.port}`, '', { headResponse: true });
      expect(head.status).toBe(200);
      expect(head.headers['content-length']).toBe(get.headers['content-length']);
    });
  });

  describe('connection limits', () => {
    it('closes a connection whose headers do not arrive in time (slowloris)', async () => {
      const socket = connect({ host: '127.0.0.1', port: f.port });
      socket.write(`POST ${CONTROL} HTTP/1.1\r\nHost: 127.0.0.1:${f.port}\r\n`);
      const drip = setInterval(() => socket.write('X-Slow: 1\r\n'), 100);
      try {
        const closedAfter = await closedWithin(socket, 3_000);
        expect(closedAfter).toBeLessThan(3_000);
      } finally {
        clearInterval(drip);
        socket.destroy();
      }
    });

    it('closes an idle connection', async () => {
      const socket = connect({ host: '127.0.0.1', port: f.port });
      try {
        expect(await closedWithin(socket, 3_000)).toBeLessThan(3_000);
      } finally {
        socket.destroy();
      }
    });

    it('drops connections over the limit and keeps serving', async () => {
      const sockets = await Promise.all(Array.from({ length: 4 }, () => openSocket(f.port)));
      try {
        const extra = connect({ host: '127.0.0.1', port: f.port });
        expect(await closedWithin(extra, 2_000)).toBeLessThan(2_000);
        extra.destroy();
      } finally {
        for (const s of sockets) s.destroy();
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect((await soap(f, 'GetExternalIPAddress')).status).toBe(200);
    });
  });
});

describe('peers outside the LAN subnets', () => {
  let f: IgdFixture;
  beforeAll(async () => {
    // The LAN is 127.0.0.0/24 here, so a client connecting from 127.0.1.5 is outside it.
    f = await startIgd({ lan: [{ interface: 'lo', address: '127.0.0.1', prefixLength: 24 }] });
  });
  afterAll(async () => {
    await f.close();
  });

  it('refuses them with 403 and closes the connection', async () => {
    const result = await soap(f, 'AddPortMapping', addArgs({ NewInternalClient: '' }), { localAddress: '127.0.1.5' });
    expect(result.status).toBe(403);
    expect(result.headers['connection']).toBe('close');
    expect(f.mappings.size).toBe(0);
  });

  it('refuses them descriptions too', async () => {
    const result = await rawRequest(f.port, `GET /rootDesc.xml HTTP/1.1\r\nHost: 127.0.0.1:${f.port}`, '', { localAddress: '127.0.1.5' });
    expect(result.status).toBe(403);
  });

  it('serves a peer inside the subnet', async () => {
    expect((await soap(f, 'GetExternalIPAddress', {}, { localAddress: '127.0.0.9' })).status).toBe(200);
  });
});

describe('several LAN addresses', () => {
  let f: IgdFixture;
  beforeAll(async () => {
    f = await startIgd({
      lan: [
        { interface: 'lo', address: '127.0.0.1', prefixLength: 8 },
        { interface: 'lo', address: '127.0.0.3', prefixLength: 8 },
      ],
    });
  });
  afterAll(async () => {
    await f.close();
  });

  it('listens on each with the same port and describes each', async () => {
    expect(f.frontEnd.describe()).toEqual([`http://127.0.0.1:${f.port}/rootDesc.xml`, `http://127.0.0.3:${f.port}/rootDesc.xml`]);
    for (const address of ['127.0.0.1', '127.0.0.3']) {
      const result = await rawRequest(f.port, `GET /rootDesc.xml HTTP/1.1\r\nHost: ${address}:${f.port}`, '', { address });
      expect(result.status).toBe(200);
    }
  });

  it('does not listen on other addresses', async () => {
    await expect(rawRequest(f.port, `GET /rootDesc.xml HTTP/1.1\r\nHost: 127.0.0.4:${f.port}`, '', { address: '127.0.0.4' })).rejects.toThrow(/ECONNREFUSED/);
  });
});

function openSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port }, () => resolve(socket));
    socket.on('error', reject);
  });
}

/** Milliseconds until the server closes the socket; rejects if it is still open after `limitMs`. */
function closedWithin(socket: Socket, limitMs: number): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`still open after ${limitMs} ms`)), limitMs);
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(performance.now() - started);
    });
    socket.resume();
  });
}
