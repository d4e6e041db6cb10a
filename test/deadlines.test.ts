import { describe, expect, test } from "vitest";
import { Deadlines } from "../src/http/deadlines.ts";
import { scriptEnds, waitFor } from "./harness.ts";

describe("Deadlines (one timer for a listener's requests)", () => {
  test("each deadline runs once, oldest first, none before its time; a cancelled one never runs", async () => {
    const late = new Deadlines(40);
    const fired: { name: string; after: number }[] = [];
    const add = (name: string) => {
      const at = performance.now();
      return late.add(() => fired.push({ name, after: performance.now() - at }));
    };
    add("a");
    const b = add("b");
    await Bun.sleep(15); // a later deadline than the first timer was armed for: it must re-arm
    add("c");
    b.cancel();
    await waitFor(() => fired.length === 2, "two deadlines to run");
    expect(fired.map((f) => f.name)).toEqual(["a", "c"]);
    for (const f of fired) expect(f.after).toBeGreaterThanOrEqual(39); // timers may round by a millisecond
    expect(late.size).toBe(0);
  });

  test("a queue that emptied starts again with the next deadline", async () => {
    const late = new Deadlines(10);
    let runs = 0;
    late.add(() => runs++).cancel();
    // Past the cancelled one's time (told by another queue): its timer fired, found nothing due, and stopped.
    let past = false;
    new Deadlines(30).add(() => (past = true));
    await waitFor(() => past, "the cancelled deadline's time to pass");
    expect(runs).toBe(0);
    late.add(() => runs++);
    await waitFor(() => runs === 1, "the new deadline to run");
    expect(late.size).toBe(0);
  });

  test("a cancelled deadline does not keep the process alive until its time", async () => {
    // An hour ahead and cancelled at once: the process must end when its script does.
    const script = `import { Deadlines } from ${JSON.stringify(new URL("../src/http/deadlines.ts", import.meta.url).pathname)};
new Deadlines(3_600_000).add(() => console.log("fired")).cancel();
console.log("done");`;
    expect(await scriptEnds(script)).toEqual({ code: 0, stdout: "done" });
  });
});
