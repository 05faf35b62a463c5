/** The UPnP IGD front-end and the pieces other front-ends and tests build on. */
export { UpnpIgdFrontEnd, type UpnpIgdFrontEndOptions } from './igd-front-end.js';
export { DEFAULT_DESCRIPTION_PATH, igdView, igdViews, type IgdVersion, type IgdView, type ServiceEndpoint } from './description/igd-views.js';
export { DEFAULT_HTTP_LIMITS, type HttpLimits } from './http/server.js';
export { serverString, upnpdVersion } from './http/server-string.js';
export { udnsForLan, type DeviceUdns } from './identity.js';
