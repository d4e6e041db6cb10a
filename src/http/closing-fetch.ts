/**
 * How long a data-plane listener that is about to stop keeps taking
 * requests, answering each with `Connection: close`: a keep-alive client
 * then leaves between two requests, knowing, instead of racing a close of
 * its idle connection (a request sent just as the server closes it is lost,
 * and a POST is not retried).
 */
export const CLOSE_GRACE_MS = 250;

/** `fetch`, with every answer marked `Connection: close` while `closing()` holds. */
export function closingFetch(fetch: (req: Request) => Response | Promise<Response>, closing: () => boolean): (req: Request) => Response | Promise<Response> {
  const last = async (req: Request): Promise<Response> => {
    const res = await fetch(req);
    try {
      res.headers.set("connection", "close");
    } catch {
      // An immutable Response: it goes as it is; the close that follows ends the connection.
    }
    return res;
  };
  return (req) => (closing() ? last(req) : fetch(req));
}
