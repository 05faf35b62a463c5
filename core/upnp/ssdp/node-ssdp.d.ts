// node-ssdp 4.0.1 ships no types. upnpd uses only its message serializer and protocol constants
// (see advertiser.ts for why the rest of the package is not used).

declare module 'node-ssdp/lib/ssdpHeader.js' {
  /** One SSDP message: a start line from `method` (or `HTTP/1.1 <method>` for a response) and headers in insertion order. */
  class SsdpHeader {
    constructor(method: string, headers?: Record<string, string | number>, isResponse?: boolean);
    toString(): string;
  }
  export = SsdpHeader;
}

declare module 'node-ssdp/lib/const.js' {
  const constants: {
    readonly SSDP_ALIVE: 'ssdp:alive';
    readonly SSDP_BYE: 'ssdp:byebye';
    readonly SSDP_ALL: 'ssdp:all';
    readonly SSDP_DEFAULT_IP: '239.255.255.250';
    readonly SSDP_DEFAULT_PORT: 1900;
  };
  export = constants;
}
