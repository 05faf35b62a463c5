const ESCAPES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };

/**
 * The five characters XML escapes, and the ones a document may not hold at all (XML 1.0 §2.2, the
 * Char production: C0 controls but tab, LF and CR; U+FFFE; U+FFFF), which no reference can carry.
 */
// eslint-disable-next-line no-control-regex -- control characters are among what this removes
const TO_ESCAPE = /[&<>"'\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g;

/**
 * Escapes text for XML content and attribute values, and drops the characters XML cannot hold, so
 * that what a client wrote (a description with U+FFFF) cannot make a response that strict parsers
 * (libxml2, expat, Go's encoding/xml, .NET) refuse. Everything echoed to a client goes through here.
 */
export function escapeXml(text: string): string {
  return text.replace(TO_ESCAPE, (c) => ESCAPES[c] ?? '');
}

const DECODES: Readonly<Record<string, string>> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/**
 * Decodes the predefined entities and character references of a text value. The XML parser runs
 * with entity processing off (no expansion attacks), so this is the only decoding; anything else
 * that looks like a reference is kept as written (miniupnpc sends a raw `&` in descriptions).
 */
export function decodeXmlText(text: string): string {
  return text.replace(/&(amp|lt|gt|quot|apos|#\d{1,7}|#x[0-9a-fA-F]{1,6});/g, (whole, name: string) => {
    if (name[0] !== '#') return DECODES[name]!;
    const codePoint = name[1] === 'x' ? Number.parseInt(name.slice(2), 16) : Number(name.slice(1));
    return isXmlChar(codePoint) ? String.fromCodePoint(codePoint) : whole;
  });
}

/** Characters XML 1.0 allows (§2.2); references to anything else are left undecoded. */
function isXmlChar(c: number): boolean {
  return c === 0x9 || c === 0xa || c === 0xd || (c >= 0x20 && c <= 0xd7ff) || (c >= 0xe000 && c <= 0xfffd) || (c >= 0x10000 && c <= 0x10ffff);
}

/** `<name>escaped text</name>`. */
export function textElement(name: string, text: string | number): string {
  return `<${name}>${escapeXml(String(text))}</${name}>`;
}

/** `<name><![CDATA[text]]></name>`, for a value that is itself an XML document. */
export function cdataElement(name: string, text: string): string {
  return `<${name}><![CDATA[${text.replaceAll(']]>', ']]]]><![CDATA[>')}]]></${name}>`;
}

/** `<name>children</name>`; children are XML already. */
export function element(name: string, children: readonly string[]): string {
  return `<${name}>${children.join('')}</${name}>`;
}

export const XML_DECLARATION = '<?xml version="1.0" encoding="utf-8"?>';
