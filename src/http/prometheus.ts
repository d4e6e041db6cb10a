/** Prometheus text format: label sets and metric families. */

const escape = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");

/** `{a="1",b="2"}` with values escaped. */
export function labels(l: Record<string, string>): string {
  return `{${Object.entries(l)
    .map(([k, v]) => `${k}="${escape(v)}"`)
    .join(",")}}`;
}

/** One family: its HELP and TYPE lines, then its samples. */
export function family(name: string, type: "gauge" | "counter" | "histogram", help: string, samples: string[]): string[] {
  return [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...samples];
}
