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
export function packHeaders(headers: Iterable<[string, string]> | Headers, extra: [string, string][] = []): Uint8Array {
  let text = "";
  // Headers.forEach: a third cheaper than its iterator, which makes a pair per header.
  if (headers instanceof Headers) headers.forEach((v, k) => void (text += `${k}:${v}\n`));
  else for (const [k, v] of headers) text += `${k}:${v}\n`;
  for (const [k, v] of extra) text += `${k}:${v}\n`;
  return encoder.encode(text);
}

const LIVE = Symbol("serve-bin.live-headers");

/**
 * The WireRequest for a Request the proxy holds. Its `head` is packed only
 * when something reads it (a socket send, a Web Request, tracing): an
 * in-process ingress that needs no header but the model id never pays for
 * it, and reads that one from the Request's own headers (`liveHeaders`).
 */
export function wireRequestOf(req: Request, prefix: string, body: Uint8Array | null): WireRequest {
  const headers = req.headers;
  let head: Uint8Array | undefined;
  const w = {
    method: req.method,
    url: req.url,
    get head(): Uint8Array {
      return (head ??= packHeaders(headers));
    },
    prefix,
    accept: headers.get("accept") ?? "",
    body,
  };
  // Not enumerable: the codec and spreads never see it.
  Object.defineProperty(w, LIVE, { value: headers });
  return w;
}

/** The Request headers a WireRequest was made from in this process, if it was. */
export function liveHeaders(w: WireRequest): Headers | undefined {
  return (w as { [LIVE]?: Headers })[LIVE];
}

export function unpackHeaders(head: Uint8Array): [string, string][] {
  const out: [string, string][] = [];
  eachHeader(head, (k, v) => void out.push([k, v]));
  return out;
}

function eachHeader(head: Uint8Array, f: (name: string, value: string) => void): void {
  for (const line of decoder.decode(head).split("\n")) {
    const at = line.indexOf(":");
    if (at > 0) f(line.slice(0, at), line.slice(at + 1));
  }
}

/**
 * The Web Request for an ingress that needs one (a `fetch` class, a custom adapter). Its headers are
 * appended to a Headers object as they are unpacked: a Request takes that faster than pairs (cold,
 * in a server between requests, 9.2-10.5 µs against 11.5-13.1 for eight headers).
 */
export function toRequest(w: WireRequest, signal?: AbortSignal): Request {
  const headers = new Headers();
  eachHeader(w.head, (k, v) => headers.append(k, v));
  headers.append(ROUTE_PREFIX_HEADER, w.prefix);
  const hasBody = w.body !== null && w.method !== "GET" && w.method !== "HEAD";
  return new Request(w.url, { method: w.method, headers, body: hasBody ? (w.body as Uint8Array<ArrayBuffer>) : null, signal });
}
