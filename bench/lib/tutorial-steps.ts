/**
 * The tutorial graph's steps (examples/tutorial/graph.ts) as plain functions,
 * for its floor (bench/lib/tutorial-floor.ts): the same sleeps, the same
 * answers, no runtime around them.
 */
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function preprocessor(x: string): Promise<number> {
  await sleep(100);
  return parseInt(x);
}

export async function avgPreprocessor(xs: number[]): Promise<number> {
  await sleep(150);
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

export function model(weight: number): (input: string) => Promise<string> {
  return async (input) => {
    await sleep(300);
    return `(${weight} * ${input})`;
  };
}

/** The Combiner's run: both models on `(a + b)` at once, through `callModel`, then their answers joined by `op`. */
export async function combine(callModel: (k: 0 | 1, input: string) => Promise<unknown>, a: number, b: number, op: string): Promise<string> {
  const req = `(${a} + ${b})`;
  const rst = await Promise.all([callModel(0, req), callModel(1, req)]);
  const list = `[${rst.map((s) => `'${s}'`).join(", ")}]`;
  return op === "sum" ? `sum(${list})` : `max(${list})`;
}
