/** The header by which an ingress learns which route prefix the proxy matched. */
export const ROUTE_PREFIX_HEADER = "x-serve-route-prefix";
