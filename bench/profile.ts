/**
 * Where a process's CPU goes, from the profiles `bun bench/main.ts --profile DIR`
 * makes every Bun child write (BUN_OPTIONS=--cpu-prof): one line per process,
 * samples grouped by the code they were in (the nearest JavaScript frame for
 * native code), largest first.
 *   bun bench/profile.ts DIR [--top 12]
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
}

/** The part of the system a source file belongs to. */
export function categoryOf(url: string): string | null {
  if (!url) return null;
  if (url.includes("node_modules/@msgpack")) return "msgpack (codec)";
  if (url.includes("node_modules/hono")) return "Hono";
  if (/src\/runtime\/channel\/(codec|frame)\.ts/.test(url)) return "wire codec + frames (src/runtime/channel)";
  if (/src\/runtime\/channel\/connection\.ts/.test(url)) return "socket connection (src/runtime/channel)";
  if (/src\/runtime\/channel\/shm/.test(url)) return "shared memory (src/runtime/channel)";
  if (/src\/runtime\/(router|replica-client|remote-invoker)\.ts/.test(url)) return "router + replica client (caller side)";
  if (/src\/runtime\/replica\//.test(url)) return "replica server (callee side)";
  if (/src\/runtime\/controller\.ts|supervisor\.ts/.test(url)) return "controller";
  if (/src\/http\/proxy\.ts|route-table\.ts/.test(url)) return "proxy (src/http/proxy.ts)";
  if (/src\/http\//.test(url)) return "src/http (other)";
  if (/src\/api\/(handle|request-context)\.ts/.test(url)) return "handles + request context";
  if (/src\/api\/(dag-driver|adapters|http-result)\.ts/.test(url)) return "DAGDriver + HTTP adapter/result";
  if (/src\/graph\//.test(url)) return "graph walk";
  if (/examples\/|test\/|bench\/fixtures\//.test(url)) return "user code (fixture)";
  if (/bench\//.test(url)) return "bench baseline code";
  if (/node_modules/.test(url)) return "other node_modules";
  if (/^node:|^bun:/.test(url)) return "Bun/Node built-ins (JS)";
  return "other JS";
}

export function summarizeProfile(p: Profile): { total: number; byCategory: [string, number][]; topNative: [string, number][] } {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const cat = new Map<number, string>();
  const categoryFor = (id: number): string => {
    const hit = cat.get(id);
    if (hit) return hit;
    const n = byId.get(id)!;
    const own = categoryOf(n.callFrame.url);
    const pid = parent.get(id);
    const c = own ?? (pid === undefined ? "no JS frame (event loop, I/O, GC, idle)" : categoryFor(pid));
    cat.set(id, c);
    return c;
  };
  const counts = new Map<string, number>();
  const native = new Map<string, number>();
  for (const s of p.samples) {
    const n = byId.get(s)!;
    const c = categoryFor(s);
    counts.set(c, (counts.get(c) ?? 0) + 1);
    if (!n.callFrame.url) {
      const k = `${n.callFrame.functionName || "(anonymous)"} in ${c}`;
      native.set(k, (native.get(k) ?? 0) + 1);
    }
  }
  const sort = (m: Map<string, number>) => [...m.entries()].sort((a, b) => b[1] - a[1]);
  return { total: p.samples.length, byCategory: sort(counts), topNative: sort(native) };
}

if (import.meta.main) {
  const dir = process.argv[2];
  const top = Number(process.argv[process.argv.indexOf("--top") + 1]) || 12;
  if (!dir) {
    console.error("usage: bun bench/profile.ts DIR [--top N]");
    process.exit(2);
  }
  for (const f of readdirSync(dir).filter((f) => f.endsWith(".cpuprofile")).sort()) {
    const p = JSON.parse(readFileSync(join(dir, f), "utf8")) as Profile;
    const s = summarizeProfile(p);
    const pct = (n: number) => `${((n / s.total) * 100).toFixed(1)}%`;
    console.log(`\n${f}: ${s.total} samples`);
    for (const [c, n] of s.byCategory.slice(0, top)) console.log(`  ${pct(n).padStart(6)}  ${c}`);
    console.log("  native frames:");
    for (const [c, n] of s.topNative.slice(0, 8)) console.log(`  ${pct(n).padStart(6)}  ${c}`);
  }
}
