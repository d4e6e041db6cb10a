// The deployment-graph tutorial: two preprocessors, two replicas of one model
// class with different weights, a combiner, and a DAGDriver on /my-dag.
//   serve-bin run examples/tutorial/graph.ts
//   curl -d '["5",[1,2],"sum"]' localhost:8000/my-dag
import { deployment, InputNode, DAGDriver, jsonRequest, type DeploymentHandle } from "serve-bin";

const sleep = (s: number) => new Promise((r) => setTimeout(r, s * 1000));

export const preprocessor = deployment(async function preprocessor(x: string) {
  await sleep(0.1);
  return parseInt(x);
});

export const avgPreprocessor = deployment(async function avgPreprocessor(xs: number[]) {
  await sleep(0.15);
  return xs.reduce((a, b) => a + b, 0) / xs.length;
});

class Model {
  constructor(private weight: number) {}
  async forward(input: string) {
    await sleep(0.3);
    return `(${this.weight} * ${input})`;
  }
}
export const ModelD = deployment(Model);

export const Combiner = deployment(
  class Combiner {
    constructor(
      private m1: DeploymentHandle<Model>,
      private m2: DeploymentHandle<Model>,
    ) {}
    async run(a: number, b: number, op: string) {
      const req = `(${a} + ${b})`;
      const rst = await Promise.all([this.m1.forward.remote(req), this.m2.forward.remote(req)]);
      const list = `[${rst.map((s) => `'${s}'`).join(", ")}]`;
      return op === "sum" ? `sum(${list})` : `max(${list})`;
    }
  },
);

const input = new InputNode();
const p1 = preprocessor.bind(input[0]);
const p2 = avgPreprocessor.bind(input[1]);
const m1 = ModelD.bind(1);
const m2 = ModelD.bind(2);
const combiner = Combiner.bind(m1, m2);
export const dag = combiner.run.bind(p1, p2, input[2]);

export default DAGDriver.options({ routePrefix: "/my-dag", numReplicas: 2 }).bind(dag, { httpAdapter: jsonRequest });

if (import.meta.main) {
  console.log(await dag.execute("5", [1, 2], "sum"));
  console.log(await dag.execute("1", [0, 2], "max"));
}
