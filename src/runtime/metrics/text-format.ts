/** Prometheus text format (0.0.4): label sets and metric families. */

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

/** A histogram's samples: cumulative `_bucket` lines (ending with +Inf), `_sum` and `_count`. */
export function histogramSamples(name: string, l: Record<string, string>, counts: readonly number[], sum: number, count: number, bounds: readonly number[]): string[] {
  const out: string[] = [];
  let acc = 0;
  bounds.forEach((le, i) => {
    acc += counts[i] ?? 0;
    out.push(`${name}_bucket${labels({ ...l, le: String(le) })} ${acc}`);
  });
  out.push(`${name}_bucket${labels({ ...l, le: "+Inf" })} ${count}`, `${name}_sum${labels(l)} ${sum}`, `${name}_count${labels(l)} ${count}`);
  return out;
}
