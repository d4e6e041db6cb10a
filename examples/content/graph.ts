// The content-understanding graph of the deployment-graph blog post:
//
//   input.url ─▶ downloader ─▶ preprocessor ─┬─▶ segmentation ─────────────┐
//                                            ├─▶ integrity ────────────────┼─▶ aggregate
//   input.metadata ──────────────────────────┴─▶ dispatcher ─▶ 1 of 4 ─────┘
//
// No network here: the downloader makes deterministic "image" bytes from the URL.
//   curl -d '{"url":"https://example.com/apple.jpg","metadata":"fruit"}' localhost:8000/content
import { deployment, InputNode, DAGDriver, type DeploymentHandle } from "serve-bin";

export const Downloader = deployment(
  class Downloader {
    run(url: string): Uint8Array {
      const bytes = new Uint8Array(64 * 64);
      let h = 2166136261;
      for (const c of url) h = Math.imul(h ^ c.charCodeAt(0), 16777619);
      for (let i = 0; i < bytes.length; i++) bytes[i] = (h = Math.imul(h ^ i, 16777619)) >>> 24;
      return bytes;
    }
  },
);

export const Preprocessor = deployment(
  class Preprocessor {
    process(image: Uint8Array): Float32Array {
      return Float32Array.from(image, (b) => b / 255);
    }
  },
);

export const segmentation = deployment(function segmentation(image: Float32Array) {
  let bright = 0;
  for (const v of image) if (v > 0.5) bright++;
  return { segments: 1 + (bright % 7), brightFraction: Number((bright / image.length).toFixed(3)) };
});

export const integrity = deployment(function integrity(image: Float32Array) {
  return { ok: image.length === 64 * 64 };
});

class Classifier {
  constructor(private label: string, private weights: string) {}
  forward(image: Float32Array) {
    let sum = 0;
    for (const v of image) sum += v;
    return { label: this.label, weights: this.weights, score: Number((sum / image.length).toFixed(4)) };
  }
  __call__(image: Float32Array) {
    return this.forward(image);
  }
}
export const ClassifierD = deployment(Classifier);

export const Dispatcher = deployment(
  class Dispatcher {
    constructor(private models: Record<"fruit" | "car" | "plant" | "general", DeploymentHandle<Classifier>>) {}
    async run(image: Float32Array, metadata: string) {
      const model = metadata === "fruit" || metadata === "car" || metadata === "plant" ? this.models[metadata] : this.models.general;
      return model.forward.remote(image);
    }
  },
);

export const aggregate = deployment(function aggregate(
  seg: { segments: number },
  check: { ok: boolean },
  cls: { label: string; score: number },
) {
  return { classification: cls, segmentation: seg, integrity: check };
});

const dispatcher = Dispatcher.bind({
  fruit: ClassifierD.options({ name: "FruitClassifier" }).bind("fruit", "weights/fruit-v1"),
  car: ClassifierD.options({ name: "CarClassifier" }).bind("car", "weights/car-v1"),
  plant: ClassifierD.options({ name: "PlantClassifier" }).bind("plant", "weights/plant-v1"),
  general: ClassifierD.options({ name: "GeneralClassifier" }).bind("general", "weights/general-v1"),
});

const input = new InputNode();
const image = Preprocessor.bind().process.bind(Downloader.bind().run.bind(input.url));
export const dag = aggregate.bind(segmentation.bind(image), integrity.bind(image), dispatcher.run.bind(image, input.metadata));
// A constant argument travels with every call: this node always asks for the plant model.
export const plantOnly = dispatcher.run.bind(image, "plant");

export default DAGDriver.options({ routePrefix: "/content" }).bind(dag);

if (import.meta.main) console.log(await dag.execute({ url: "https://example.com/apple.jpg", metadata: "fruit" }));
