export {};
/**
 * A bounded load for the cluster scripts: `bun load.ts URL N C [PROGRESS]` posts
 * the tutorial's request N times, C at a time, and prints `ok=… failed=…` (and
 * the first failures on stderr). Runs inside a harness namespace. With a
 * PROGRESS file it writes the number of answers so far there after each one,
 * so a script can act once the load is flowing instead of sleeping.
 */
import { writeFileSync } from "node:fs";

const [url, n = "100", c = "4", progress] = process.argv.slice(2);
if (!url) throw new Error("usage: bun load.ts URL N C [PROGRESS]");
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
    if (progress) writeFileSync(progress, String(ok + failed));
  }
}
await Promise.all(Array.from({ length: Number(c) }, worker));
console.log(`ok=${ok} failed=${failed}`);
