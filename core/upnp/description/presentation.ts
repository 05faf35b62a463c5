import { escapeXml } from './xml.js';

/** The presentationURL page: Windows links the gateway's icon to it. Static and small. */
export function renderPresentationPage(friendlyName: string, descriptionPath: string): string {
  const name = escapeXml(friendlyName);
  return (
    `<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>${name}</title></head>` +
    `<body><h1>${name}</h1><p>UPnP Internet Gateway Device (upnpd). ` +
    `<a href="${escapeXml(descriptionPath)}">Device description</a></p></body></html>\n`
  );
}
