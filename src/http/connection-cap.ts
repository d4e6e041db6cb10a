import { ServeError } from "../error.ts";
import { closing } from "./body-reader.ts";
import { errorResponse } from "./error-response.ts";

type Fetch = (req: Request) => Response | Promise<Response>;

/**
 * Bounds the requests a listener holds at once. Each holds a connection and a
 * descriptor until it is answered, so thousands of slow clients could
 * otherwise use up the process's open-file limit and leave nothing for the
 * admin API or the replicas' sockets. Past `max`, a request is answered 503
 * at once and its connection closed.
 *
 * @example Bun.serve({ fetch: capRequests(4096, "proxy.maxConnections", app.fetch) })
 */
export function capRequests(max: number, setting: string, fetch: Fetch): Fetch {
  let open = 0;
  const capped = async (req: Request): Promise<Response> => {
    if (open >= max) return overCapacity(max, setting);
    open++;
    try {
      return await fetch(req);
    } finally {
      open--;
    }
  };
  return capped;
}

/** The answer past the cap: 503, retry in a second, and the connection closed. */
export function overCapacity(max: number, setting: string): Response {
  const res = closing(errorResponse(new ServeError("unavailable", `the server is holding ${max} requests at once (${setting}); retry shortly, or raise the limit`)));
  res.headers.set("retry-after", "1");
  return res;
}
