import { XMLParser } from 'fast-xml-parser';

// The UPnP documents the tests read back, parsed by a standard parser (fast-xml-parser returns
// `any`): each function gives the shape the tests rely on. Lists are always arrays, even of one;
// attributes are named with an '@'; text stays text.

const documentParser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@',
  parseTagValue: false,
  isArray: (name) => ['service', 'device', 'action', 'argument', 'stateVariable', 'allowedValue'].includes(name),
});

export interface DescribedService {
  readonly serviceType: string;
  readonly serviceId: string;
  readonly SCPDURL: string;
  readonly controlURL: string;
  readonly eventSubURL: string;
}

export interface DescribedDevice {
  readonly deviceType: string;
  readonly friendlyName: string;
  readonly UDN: string;
  readonly presentationURL?: string;
  readonly serviceList: { readonly service: readonly DescribedService[] };
  readonly deviceList?: { readonly device: readonly DescribedDevice[] };
}

/** The `<root>` of a device description. */
export interface DeviceDescription {
  readonly '@configId': string;
  readonly specVersion: { readonly major: string; readonly minor: string };
  readonly device: readonly DescribedDevice[];
}

export interface ScpdStateVariable {
  readonly name: string;
  readonly '@sendEvents': string;
}

export interface ScpdAction {
  readonly name: string;
  readonly argumentList?: { readonly argument: ReadonlyArray<{ readonly name: string; readonly direction: string; readonly relatedStateVariable: string }> };
}

/** The `<scpd>` of a service description. */
export interface Scpd {
  readonly '@configId': string;
  readonly serviceStateTable: { readonly stateVariable: readonly ScpdStateVariable[] };
  readonly actionList: { readonly action: readonly ScpdAction[] };
}

export function parseDescription(xml: string): DeviceDescription {
  return (documentParser.parse(xml) as { root: DeviceDescription }).root;
}

/** A device and every device embedded in it, the device first. */
export function devicesOf(device: DescribedDevice): DescribedDevice[] {
  return [device, ...(device.deviceList?.device ?? []).flatMap(devicesOf)];
}

export function parseScpd(xml: string): Scpd {
  return (documentParser.parse(xml) as { scpd: Scpd }).scpd;
}

// Values untrimmed and the event namespace's own prefix kept: a property set reads back exactly.
const propertySetParser = new XMLParser({ parseTagValue: false, trimValues: false, isArray: (name) => name === 'e:property' });

/** The variables of a GENA `<e:propertyset>`, by name (one `<e:property>` each). */
export function propertySetVariables(xml: string): Record<string, string> {
  const doc = propertySetParser.parse(xml) as { 'e:propertyset': { 'e:property': Array<Record<string, string>> } };
  return Object.fromEntries(doc['e:propertyset']['e:property'].flatMap((property) => Object.entries(property)));
}
