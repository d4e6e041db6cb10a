import { ROUTE_PREFIX_HEADER } from "./route-prefix.ts";

/**
 * An HTTP request as it travels from the proxy to an ingress replica. The
 * headers travel packed in one byte string ("name:value\n" lines): decoding
 * them one msgpack string at a time was a tenth of an ingress's CPU, and the
 * common path needs only the route prefix and Accept, which travel apart.
 */
export interface WireRequest {
  method: string;
  url: string;
  head: Uint8Array;
  /** The route prefix the proxy matched. */
  prefix: string;
  accept: string;
  body: Uint8Array | null;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Packs header pairs; names and values never hold "\n" (HTTP forbids it). */
export function packHeaders(headers: Iterable<[string, string]>, extra: [string, string][] = []): Uint8Array {
  let text = "";
  for (const [k, v] of headers) text += `${k}:${v}\n`;
  for (const [k, v] of extra) text += `${k}:${v}\n`;
  return encoder.encode(text);
}

export function unpackHeaders(head: Uint8Array): [string, string][] {
  const out: [string, string][] = [];
  for (const line of decoder.decode(head).split("\n")) {
    const at = line.indexOf(":");
    if (at > 0) out.push([line.slice(0, at), line.slice(at + 1)]);
  }
  return out;
}

/** The Web Request for an ingress that needs one (a `fetch` class, a custom adapter). */
export function toRequest(w: WireRequest, signal?: AbortSignal): Request {
  const headers = unpackHeaders(w.head);
  headers.push([ROUTE_PREFIX_HEADER, w.prefix]);
  const hasBody = w.body !== null && w.method !== "GET" && w.method !== "HEAD";
  return new Request(w.url, { method: w.method, headers, body: hasBody ? (w.body as Uint8Array<ArrayBuffer>) : null, signal });
}
