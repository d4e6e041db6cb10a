/** The header by which an ingress learns which route prefix the proxy matched. */
export const ROUTE_PREFIX_HEADER = "x-serve-route-prefix";

/**
 * Whether `path` lies under `prefix`, whole segments only: `/a` holds `/a`
 * and `/a/b`, not `/ab`; `/` holds everything.
 *
 * @example underPrefix("/my-dag/x", "/my-dag") // true
 */
export function underPrefix(path: string, prefix: string): boolean {
  return prefix === "/" || path === prefix || path.startsWith(prefix + "/");
}

/** Sorts entries longest prefix first, so the first match is the most specific one. */
export function longestFirst<T>(entries: readonly T[], prefixOf: (e: T) => string): T[] {
  return [...entries].sort((a, b) => prefixOf(b).length - prefixOf(a).length);
}
