/**
 * The in-process baseline of the model scenarios, in a fresh Bun process
 * (as fresh as a replica, and not sharing the heap of the process that
 * drives the load): `bun local-runner.ts <graph.ts> <adapter> <runs> <bodies.json>`
 * reads a JSON list of base64 HTTP bodies, runs each through the graph's own
 * adapter and `dag.execute()` once to warm up, then `runs` times in turn,
 * and prints `{ ms: number[], answers: unknown[] }` (answers of the warm-up).
 */
export {};

const [graphFile, adapterName, runs, bodiesFile] = process.argv.slice(2);
const mod = (await import(graphFile!)) as Record<string, unknown> & { dag: { execute(x: unknown): Promise<unknown> } };
const adapter = mod[adapterName!] as (req: Request) => Promise<unknown>;
const bodies = (JSON.parse(await Bun.file(bodiesFile!).text()) as string[]).map((b) => Buffer.from(b, "base64"));
const once = async (body: Buffer) => mod.dag.execute(await adapter(new Request("http://local/", { method: "POST", body: body as BodyInit })));
const answers: unknown[] = [];
for (const b of bodies) answers.push(await once(b));
const ms: number[] = [];
for (let i = 0; i < Number(runs); i++) {
  const t0 = performance.now();
  await once(bodies[i % bodies.length]!);
  ms.push(performance.now() - t0);
}
const plain = (_k: string, v: unknown) => (ArrayBuffer.isView(v) && !(v instanceof DataView) ? Array.from(v as unknown as ArrayLike<number>) : v);
console.log(JSON.stringify({ ms, answers }, plain));
