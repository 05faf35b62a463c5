/** SSDP protocol values (UDA 1.1 §1). */

/** IPv4 multicast group of SSDP. */
export const SSDP_MULTICAST_ADDRESS = '239.255.255.250';
export const SSDP_PORT = 1900;

/** IPv6 groups of SSDP (UDA 1.1 Annex A): link-local scope, and site-local scope. */
export const SSDP_IPV6_LINK_LOCAL_GROUP = 'ff02::c';
export const SSDP_IPV6_SITE_LOCAL_GROUP = 'ff05::c';

/** NTS of a NOTIFY. */
export const NTS_ALIVE = 'ssdp:alive';
export const NTS_BYEBYE = 'ssdp:byebye';
export const NTS_UPDATE = 'ssdp:update';

/** ST of a search for everything. */
export const ST_ALL = 'ssdp:all';
