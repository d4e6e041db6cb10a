/**
 * The value after `name` on the command line of a bench tool, or `fallback`.
 * @example const n = Number(option("-n", "1000"));
 */
export function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1]! : fallback;
}
