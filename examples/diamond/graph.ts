// The Serve Pipeline proposal's diamond: two models read parts of the input,
// an ensemble adds their outputs to a third part.
//   m1.forward(input[0]) ─┐
//   m2.forward(input[1]) ─┼─ ensemble ─▶ output       execute(1, 2, 3) → 8
//   input[2] ─────────────┘
import { deployment, InputNode } from "serve-bin";

export const Model = deployment(
  class Model {
    constructor(private weight: number) {}
    forward(x: number) {
      return x * this.weight;
    }
  },
);

export const ensemble = deployment(function ensemble(a: number, b: number, c: number) {
  return a + b + c;
});

const input = new InputNode();
const m1 = Model.bind(1);
const m2 = Model.bind(2);
const dag = ensemble.bind(m1.forward.bind(input[0]), m2.forward.bind(input[1]), input[2]);

// Not an ingress: served as if bound in DAGDriver.bind(dag, { httpAdapter: jsonRequest }),
// so `curl -d '[1,2,3]' localhost:8000/` answers 8.
export default dag;

if (import.meta.main) console.log(await dag.execute(1, 2, 3));
