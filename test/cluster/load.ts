export {};
/**
 * A bounded load for the cluster scripts: `bun load.ts URL N C` posts the
 * tutorial's request N times, C at a time, and prints `ok=… failed=…` (and the
 * first failures on stderr). Runs inside a harness namespace.
 */
const [url, n = "100", c = "4"] = process.argv.slice(2);
if (!url) throw new Error("usage: bun load.ts URL N C");
const want = "sum(['(1 * (5 + 1.5))', '(2 * (5 + 1.5))'])";
let next = 0;
let ok = 0;
let failed = 0;
async function worker(): Promise<void> {
  while (next < Number(n)) {
    next++;
    try {
      const res = await fetch(url!, { method: "POST", body: '["5",[1,2],"sum"]', signal: AbortSignal.timeout(30_000) });
      const text = await res.text();
      if (res.status === 200 && text === want) ok++;
      else if (++failed <= 5) console.error(`failed: ${res.status} ${text.slice(0, 200)}`);
    } catch (e) {
      if (++failed <= 5) console.error(`failed: ${(e as Error).message}`);
    }
  }
}
await Promise.all(Array.from({ length: Number(c) }, worker));
console.log(`ok=${ok} failed=${failed}`);
