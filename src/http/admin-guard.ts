/**
 * What keeps web pages out of the admin API. A browser will send a request
 * to 127.0.0.1 for any page it has open: a cross-site form can POST
 * `text/plain` without asking first, and a page whose name is re-pointed to
 * 127.0.0.1 (DNS rebinding) reads the answers as its own. So: the Host must
 * name the admin API itself, a browser's Origin must be the admin API's
 * own, and a write must say JSON (or YAML), which a page can only send
 * after a CORS preflight that the admin API never grants.
 */
import { ServeError } from "../error.ts";

/** Where the admin API listens, as it was bound. */
export interface AdminAddress {
  host: string;
  port: number;
}

/** Whether `host` names this machine's loopback interface. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** `host[:port]` of a Host header or URL authority, the port defaulted for http. */
function authority(value: string): { host: string; port: number } | null {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s[\]]+)(?::(\d{1,5}))?$/.exec(value.trim());
  return m ? { host: m[1]!, port: m[2] === undefined ? 80 : Number(m[2]) } : null;
}

/**
 * Why a request must be refused before it reaches a route (403), or null.
 * On a loopback bind the Host must be a loopback name or address with the
 * admin port: any other name is a page that had its name re-pointed here.
 * A bind on another address is reached by names the server cannot know, so
 * there the token is the guard and Host is only compared with Origin.
 */
export function refuseOrigin(req: Request, at: AdminAddress): ServeError | null {
  const hostHeader = req.headers.get("host");
  const host = hostHeader === null ? null : authority(hostHeader);
  if (!host) return new ServeError("forbidden", "the request has no valid Host header; send Host: 127.0.0.1:<admin port>");
  if (isLoopback(at.host) && (!isLoopback(host.host) || host.port !== at.port)) {
    return new ServeError(
      "forbidden",
      `the admin API answers only to its own address (Host 127.0.0.1:${at.port}, localhost:${at.port} or [::1]:${at.port}), not to Host ${hostHeader}; a web page whose name points here is refused`,
    );
  }
  if (req.headers.get("sec-fetch-site") === "cross-site") return crossSite(req.headers.get("origin") ?? "another site");
  const origin = req.headers.get("origin");
  if (origin !== null) {
    const m = /^https?:\/\/(.+)$/.exec(origin);
    const from = m ? authority(m[1]!) : null;
    if (!from || from.host.toLowerCase() !== host.host.toLowerCase() || from.port !== host.port) return crossSite(origin);
  }
  return null;
}

function crossSite(origin: string): ServeError {
  return new ServeError(
    "forbidden",
    `the admin API refuses requests from web pages of other origins (Origin ${origin}); call it from the command line or a server, not from a browser page`,
  );
}

const JSON_TYPE = /^application\/json\s*(;|$)/i;
const YAML_TYPE = /^(application|text)\/(x-)?yaml\s*(;|$)/i;

/**
 * Why a write must be refused for its Content-Type (415), or null. Every
 * POST, PUT and PATCH must be JSON (PUT may be YAML); a DELETE carries no
 * body and a page cannot send one without a preflight anyway.
 */
export function refuseContentType(req: Request, yamlToo: boolean): ServeError | null {
  if (req.method !== "POST" && req.method !== "PUT" && req.method !== "PATCH") return null;
  const type = req.headers.get("content-type") ?? "";
  if (JSON_TYPE.test(type) || (yamlToo && YAML_TYPE.test(type))) return null;
  const wanted = yamlToo ? "application/json or application/yaml" : "application/json";
  return new ServeError(
    "unsupported_media_type",
    `${req.method} ${new URL(req.url).pathname} needs Content-Type ${wanted}, not ${type ? `"${type}"` : "none"}; e.g. curl -H 'content-type: application/json' -d '{...}'`,
  );
}
