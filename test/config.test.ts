import { describe, expect, test } from "vitest";
import { ServeError } from "../src/error.ts";
import {
  configJsonSchema,
  deploymentPatchSchema,
  diffConfigs,
  formatIssues,
  formatPath,
  isEmptyDiff,
  mergeDeploymentPatch,
  mergeRoutePatch,
  parseConfig,
  parseImportPath,
  parseYAML,
  readEnv,
  resolveDeployment,
  toYAML,
  validate,
  type DeploymentConfig,
  type ServeConfig,
} from "../src/config/index.ts";

const SERVER_DEFAULTS = {
  proxy: { host: "0.0.0.0", port: 8000, requestTimeoutS: 60, maxBodyBytes: 104857600, errorDetail: "full", shutdownTimeoutS: 8, bodyTimeoutS: 60, maxConnections: 4096, location: "main" },
  admin: { host: "127.0.0.1", port: 8265 },
  sharedMemory: { enabled: true, thresholdBytes: 16384, arenaBytes: 268435456 },
  limits: { maxReplicasPerDeployment: 64, maxReplicas: 128, maxConcurrentStarts: 8, restartBackoffS: 1, restartBackoffMaxS: 300, restartResetAfterS: 600, maxConstructorRetries: 10, maxReplicaMemoryBytes: 8589934592, planTimeoutS: 60 },
  logging: { format: "text", level: "info" },
  tracing: { sampleRatio: 1 },
};

/** A valid config file: two deployments in one application, a second application, one route. */
function base(): any {
  return {
    applications: [
      {
        name: "default",
        routePrefix: "/my-dag",
        importPath: "./graph.ts:default",
        deployments: [
          { name: "DAGDriver", maxOngoingRequests: 100 },
          {
            name: "Model",
            numReplicas: 2,
            userConfig: { weights: "./weights-v1.json" },
            env: { OMP_NUM_THREADS: "1" },
          },
        ],
      },
      { name: "other", routePrefix: "/other", importPath: "./other.ts", deployments: [] },
    ],
    routes: [{ routePrefix: "/classify", split: { default: 70, other: 30 } }],
  };
}

function parsed(input: unknown = base()): ServeConfig {
  const r = parseConfig(input);
  if (!r.ok) throw new Error(formatIssues(r.issues));
  return r.value;
}

/** The issues of `base()` after `edit`. */
function issuesAfter(edit: (c: any) => void) {
  const c = base();
  edit(c);
  const r = parseConfig(c);
  return r.ok ? [] : r.issues;
}

function resolvedModel(over: Partial<DeploymentConfig> = {}): DeploymentConfig {
  return { ...resolveDeployment("Model", [{ numReplicas: 2, userConfig: { w: 1 }, env: { A: "1" } }]), ...over };
}

describe("parseConfig", () => {
  test("an empty config gets every server default, no application and no route", () => {
    expect(parseConfig({})).toEqual({ ok: true, value: { ...SERVER_DEFAULTS, applications: [], routes: [] } });
  });

  test("a partial server section is completed with defaults and the given values kept", () => {
    const r = parseConfig({ proxy: { port: 0 }, sharedMemory: { enabled: false } });
    expect(r).toEqual({
      ok: true,
      value: {
        ...SERVER_DEFAULTS,
        proxy: { ...SERVER_DEFAULTS.proxy, port: 0 },
        sharedMemory: { ...SERVER_DEFAULTS.sharedMemory, enabled: false },
        applications: [],
        routes: [],
      },
    });
  });

  test("deployment entries keep only what the file says, so the code's options fill the rest", () => {
    expect(parsed().applications[0]!.deployments[0]).toEqual({ name: "DAGDriver", maxOngoingRequests: 100 });
  });

  test("an autoscalingConfig gets its defaults, and maxReplicas never below minReplicas", () => {
    const c = base();
    c.applications[0].deployments[1] = { name: "Model", numReplicas: "auto", autoscalingConfig: {} };
    c.applications[0].deployments.push({ name: "Big", numReplicas: "auto", autoscalingConfig: { minReplicas: 12 } });
    const deps = parsed(c).applications[0]!.deployments;
    expect(deps[1]!.autoscalingConfig).toEqual({
      minReplicas: 1,
      maxReplicas: 10,
      targetOngoingRequests: 2,
      upscaleDelayS: 3,
      downscaleDelayS: 60,
    });
    expect(deps[2]!.autoscalingConfig?.maxReplicas).toBe(12);
  });

  test("numbers and booleans in env are read as strings", () => {
    const c = base();
    c.applications[0].deployments[1].env = { OMP_NUM_THREADS: 1, DEBUG: true };
    expect(parsed(c).applications[0]!.deployments[1]!.env).toEqual({ OMP_NUM_THREADS: "1", DEBUG: "true" });
  });

  test("SERVE_BIN_ERROR_DETAIL sets proxy.errorDetail only when the config leaves it out", () => {
    const fromEnv = parseConfig({}, { errorDetail: "message" });
    expect(fromEnv.ok && fromEnv.value.proxy.errorDetail).toBe("message");
    const fromFile = parseConfig({ proxy: { errorDetail: "full" } }, { errorDetail: "message" });
    expect(fromFile.ok && fromFile.value.proxy.errorDetail).toBe("full");
  });

  const dep = "applications[0].deployments[1]";
  const cases: [string, (c: any) => void, string, RegExp][] = [
    ["numReplicas below 0", (c) => (c.applications[0].deployments[1].numReplicas = -1), `${dep}.numReplicas`, /whole number ≥ 0.*"auto"/],
    ["numReplicas a fraction", (c) => (c.applications[0].deployments[1].numReplicas = 1.5), `${dep}.numReplicas`, /whole number ≥ 0/],
    ["numReplicas a word", (c) => (c.applications[0].deployments[1].numReplicas = "many"), `${dep}.numReplicas`, /"auto"/],
    ["maxOngoingRequests 0", (c) => (c.applications[0].deployments[1].maxOngoingRequests = 0), `${dep}.maxOngoingRequests`, /whole number ≥ 1/],
    ["maxQueuedRequests -2", (c) => (c.applications[0].deployments[1].maxQueuedRequests = -2), `${dep}.maxQueuedRequests`, /≥ -1 \(-1 for no limit\)/],
    ["userConfig not JSON-like", (c) => (c.applications[0].deployments[1].userConfig = { n: Number.NaN }), `${dep}.userConfig`, /JSON-like/],
    ["minReplicas below 0", (c) => (c.applications[0].deployments[1].autoscalingConfig = { minReplicas: -1 }), `${dep}.autoscalingConfig.minReplicas`, /≥ 0/],
    [
      "maxReplicas below minReplicas",
      (c) => (c.applications[0].deployments[1].autoscalingConfig = { minReplicas: 4, maxReplicas: 2 }),
      `${dep}.autoscalingConfig.maxReplicas`,
      /raise maxReplicas or lower minReplicas/,
    ],
    [
      "targetOngoingRequests 0",
      (c) => (c.applications[0].deployments[1].autoscalingConfig = { targetOngoingRequests: 0 }),
      `${dep}.autoscalingConfig.targetOngoingRequests`,
      /> 0/,
    ],
    ["upscaleDelayS negative", (c) => (c.applications[0].deployments[1].autoscalingConfig = { upscaleDelayS: -1 }), `${dep}.autoscalingConfig.upscaleDelayS`, /seconds ≥ 0/],
    ["downscaleDelayS a word", (c) => (c.applications[0].deployments[1].autoscalingConfig = { downscaleDelayS: "x" }), `${dep}.autoscalingConfig.downscaleDelayS`, /seconds ≥ 0/],
    ["autoscalingConfig a list", (c) => (c.applications[0].deployments[1].autoscalingConfig = [1]), `${dep}.autoscalingConfig`, /as a mapping/],
    ["healthCheckPeriodS 0", (c) => (c.applications[0].deployments[1].healthCheckPeriodS = 0), `${dep}.healthCheckPeriodS`, /seconds > 0/],
    ["healthCheckTimeoutS negative", (c) => (c.applications[0].deployments[1].healthCheckTimeoutS = -1), `${dep}.healthCheckTimeoutS`, /seconds > 0/],
    ["gracefulShutdownTimeoutS negative", (c) => (c.applications[0].deployments[1].gracefulShutdownTimeoutS = -1), `${dep}.gracefulShutdownTimeoutS`, /seconds ≥ 0/],
    ["an env name with a dash", (c) => (c.applications[0].deployments[1].env = { "A-B": "1" }), `${dep}.env["A-B"]`, /letters, digits and _/],
    ["an env value that is a mapping", (c) => (c.applications[0].deployments[1].env = { A: {} }), `${dep}.env.A`, /OMP_NUM_THREADS: "1"/],
    ["env a list", (c) => (c.applications[0].deployments[1].env = ["A=1"]), `${dep}.env`, /mapping of variable names/],
    ["a deployment routePrefix without /", (c) => (c.applications[0].deployments[0].routePrefix = "x"), "applications[0].deployments[0].routePrefix", /starts with "\/"/],
    ["a deployment with an empty name", (c) => (c.applications[0].deployments[1].name = ""), `${dep}.name`, /non-empty/],
    ["a deployment without a name", (c) => delete c.applications[0].deployments[1].name, `${dep}.name`, /expected a deployment name/],
    [
      "an application name with a space",
      (c) => {
        c.routes = []; // the route names the old name
        c.applications[0].name = "my app";
      },
      "applications[0].name",
      /without spaces/,
    ],
        ["an application routePrefix with a trailing /", (c) => (c.applications[0].routePrefix = "/my-dag/"), "applications[0].routePrefix", /no trailing "\/"/],
    ["an application routePrefix under /-/", (c) => (c.applications[0].routePrefix = "/-/admin"), "applications[0].routePrefix", /reserved/],
    ["an importPath that is not a module", (c) => (c.applications[0].importPath = "./graph.py"), "applications[0].importPath", /"\.\/graph\.ts:default"/],
    ["deployments not a list", (c) => (c.applications[0].deployments = {}), "applications[0].deployments", /list of deployments/],
    ["applications not a list", (c) => (c.applications = {}), "applications", /list of applications/],
    ["an empty proxy host", (c) => (c.proxy = { host: "" }), "proxy.host", /must not be empty/],
    ["a proxy port over 65535", (c) => (c.proxy = { port: 70000 }), "proxy.port", /from 0 to 65535/],
    ["requestTimeoutS 0", (c) => (c.proxy = { requestTimeoutS: 0 }), "proxy.requestTimeoutS", /seconds > 0/],
    ["maxBodyBytes 0", (c) => (c.proxy = { maxBodyBytes: 0 }), "proxy.maxBodyBytes", /≥ 1/],
    ["an unknown errorDetail", (c) => (c.proxy = { errorDetail: "all" }), "proxy.errorDetail", /"full".*"message"/],
    ["shutdownTimeoutS negative", (c) => (c.proxy = { shutdownTimeoutS: -1 }), "proxy.shutdownTimeoutS", /seconds ≥ 0/],
    ["an admin host that is a number", (c) => (c.admin = { host: 5 }), "admin.host", /host name or address/],
    ["an admin port below 0", (c) => (c.admin = { port: -1 }), "admin.port", /from 0 to 65535/],
    ["sharedMemory.enabled a word", (c) => (c.sharedMemory = { enabled: "yes" }), "sharedMemory.enabled", /true or false/],
    ["thresholdBytes negative", (c) => (c.sharedMemory = { thresholdBytes: -1 }), "sharedMemory.thresholdBytes", /≥ 0/],
    ["arenaBytes 0", (c) => (c.sharedMemory = { arenaBytes: 0, thresholdBytes: 0 }), "sharedMemory.arenaBytes", /≥ 1/],
    ["thresholdBytes over arenaBytes", (c) => (c.sharedMemory = { thresholdBytes: 10, arenaBytes: 5 }), "sharedMemory.thresholdBytes", /raise arenaBytes/],
    ["proxy a string", (c) => (c.proxy = "0.0.0.0:8000"), "proxy", /expected proxy as a mapping/],
    ["a negative weight", (c) => (c.routes[0].split.other = -1), "routes[0].split.other", /weight ≥ 0/],
    ["weights that add up to 0", (c) => (c.routes[0].split = { default: 0, other: 0 }), "routes[0].split", /at least one application a weight > 0/],
    ["a stickyHeader with a space", (c) => (c.routes[0].stickyHeader = "x user"), "routes[0].stickyHeader", /header name/],
    ["a route without a split", (c) => delete c.routes[0].split, "routes[0].split", /mapping of application names to weights/],
  ];
  test.each(cases)("%s is one issue at its path, saying what to write", (_, edit, path, message) => {
    const issues = issuesAfter(edit);
    expect(issues.map((i) => ({ path: formatPath(i.path), message: i.message }))).toEqual([{ path, message: expect.stringMatching(message) }]);
  });

  test("the issue path is kept as data for API bodies", () => {
    expect(issuesAfter((c) => (c.applications[0].deployments[1].numReplicas = -1))).toEqual([
      { path: ["applications", 0, "deployments", 1, "numReplicas"], message: expect.any(String) },
    ]);
  });

  test("an unknown key is refused, naming it and the closest known key", () => {
    expect(issuesAfter((c) => (c.applications[0].deployments[1].numReplica = 3))).toEqual([
      {
        path: ["applications", 0, "deployments", 1, "numReplica"],
        message: 'unknown key "numReplica" in a deployment: did you mean "numReplicas"?',
      },
    ]);
  });

  test("an unknown key with no close match lists the keys allowed", () => {
    expect(issuesAfter((c) => (c.admin = { token: "x" }))).toEqual([
      { path: ["admin", "token"], message: 'unknown key "token" in admin: expected one of host, port' },
    ]);
  });

  test("two applications with one name are refused at the second", () => {
    expect(
      issuesAfter((c) => {
        c.applications[1].name = "default";
        c.routes = [];
      }),
    ).toEqual([
      { path: ["applications", 1, "name"], message: 'application name "default" is already used by applications[0]: names must be unique' },
    ]);
  });

  test("two deployments with one name in an application are refused", () => {
    expect(issuesAfter((c) => (c.applications[0].deployments[1].name = "DAGDriver"))).toEqual([
      {
        path: ["applications", 0, "deployments", 1, "name"],
        message: 'deployment "DAGDriver" is listed twice (first at deployments[0]): merge the two entries',
      },
    ]);
  });

  test("one routePrefix for two applications is refused", () => {
    expect(issuesAfter((c) => (c.applications[1].routePrefix = "/my-dag"))).toEqual([
      { path: ["applications", 1, "routePrefix"], message: 'routePrefix "/my-dag" is already served by applications[0]: give each a different prefix' },
    ]);
  });

  test("a route on an application's prefix is refused", () => {
    expect(issuesAfter((c) => (c.routes[0].routePrefix = "/other"))).toEqual([
      { path: ["routes", 0, "routePrefix"], message: 'routePrefix "/other" is already served by applications[1]: give each a different prefix' },
    ]);
  });

  test("a route naming a missing application is refused at the name, for split and shadow", () => {
    expect(
      issuesAfter((c) => {
        c.routes[0].split = { default: 1, nope: 1 };
        c.routes[0].shadow = "ghost";
      }),
    ).toEqual([
      { path: ["routes", 0, "split", "nope"], message: 'no application named "nope" (applications: default, other): add it or fix the name' },
      { path: ["routes", 0, "shadow"], message: 'no application named "ghost" (applications: default, other): add it or fix the name' },
    ]);
  });

  test('numReplicas "auto" without an autoscalingConfig is refused, saying what to add', () => {
    expect(issuesAfter((c) => (c.applications[0].deployments[1].numReplicas = "auto"))).toEqual([
      {
        path: ["applications", 0, "deployments", 1, "numReplicas"],
        message: 'numReplicas "auto" needs an autoscalingConfig: add autoscalingConfig: { minReplicas: 1, maxReplicas: 8 }, or set a number',
      },
    ]);
    expect(issuesAfter((c) => Object.assign(c.applications[0].deployments[1], { numReplicas: "auto", autoscalingConfig: {} }))).toEqual([]);
  });

  test("several problems are all reported at once", () => {
    const issues = issuesAfter((c) => {
      c.proxy = { port: -1 };
      c.applications[0].importPath = "x";
      c.applications[0].deployments[1].maxOngoingRequests = 0;
    });
    expect(issues.map((i) => formatPath(i.path))).toEqual(["proxy.port", "applications[0].importPath", "applications[0].deployments[1].maxOngoingRequests"]);
  });
});

describe("YAML", () => {
  test("a config written as YAML reads back equal", () => {
    const config = parsed();
    const text = toYAML(config);
    expect(parseYAML(text, "app.yaml")).toEqual({ ok: true, value: config });
  });

  test("a fully resolved config round-trips, autoscaling and userConfig included", () => {
    const c = base();
    c.applications[0].deployments = [
      resolveDeployment("DAGDriver", [{ routePrefix: "/my-dag" }], { ingress: true }),
      resolveDeployment("Model", [{ numReplicas: "auto", autoscalingConfig: { maxReplicas: 8 }, userConfig: { a: [1, null, "x"], b: { c: true } } }]),
    ];
    const config = parsed(c);
    expect(parseYAML(toYAML(config), "app.yaml")).toEqual({ ok: true, value: config });
  });

  test("keys are written in the documented order, and an empty routes is left out", () => {
    const c = base();
    delete c.routes;
    const text = toYAML(parsed(c));
    const topKeys = text.split("\n").filter((l) => /^\w/.test(l)).map((l) => l.split(":")[0]);
    expect(topKeys).toEqual(["proxy", "admin", "sharedMemory", "limits", "logging", "tracing", "applications"]);
    expect(text).toContain(
      [
        "  - name: default",
        "    routePrefix: /my-dag",
        "    importPath: ./graph.ts:default",
        "    deployments:",
        "      - name: DAGDriver",
        "        maxOngoingRequests: 100",
        "      - name: Model",
        "        numReplicas: 2",
        "        userConfig:",
        "          weights: ./weights-v1.json",
        "        env:",
        '          OMP_NUM_THREADS: "1"',
      ].join("\n"),
    );
  });

  test("a YAML syntax error is one issue with the file, line and column", () => {
    const r = parseYAML("proxy:\n  port: 8000\napplications: [\n  - name: x\n", "app.yaml");
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.issues.length).toBeGreaterThan(0);
      expect(r.issues[0]).toEqual({ path: [], message: expect.stringMatching(/^app\.yaml:\d+:\d+: YAML syntax error: /) });
    }
  });

  test("a duplicated key is a syntax error on its line", () => {
    const r = parseYAML("proxy:\n  port: 8000\n  port: 8001\n", "app.yaml");
    expect(r).toEqual({ ok: false, issues: [{ path: [], message: expect.stringMatching(/^app\.yaml:3:3: YAML syntax error: Map keys must be unique/) }] });
  });

  test("a validation problem points at its line in the file", () => {
    const text = "applications:\n  - name: a\n    importPath: ./g.ts\n    deployments:\n      - name: M\n        numReplicas: -1\n";
    expect(parseYAML(text, "app.yaml")).toEqual({
      ok: false,
      issues: [
        {
          path: ["applications", 0, "deployments", 0, "numReplicas"],
          message: expect.stringMatching(/whole number ≥ 0.* \(app\.yaml:6:22\)$/),
        },
      ],
    });
  });

  test("an empty file is a config with defaults and no application", () => {
    expect(parseYAML("", "app.yaml")).toEqual({ ok: true, value: { ...SERVER_DEFAULTS, applications: [], routes: [] } });
  });
});

describe("configJsonSchema", () => {
  const schema = configJsonSchema() as any;

  /** Every object schema in the tree, with its JSON pointer-ish path. */
  function objects(node: any, path = "#", out: [string, any][] = []): [string, any][] {
    if (!node || typeof node !== "object") return out;
    if (node.type === "object") out.push([path, node]);
    for (const [k, v] of Object.entries(node.properties ?? {})) objects(v, `${path}/properties/${k}`, out);
    if (node.items) objects(node.items, `${path}/items`, out);
    if (typeof node.additionalProperties === "object") objects(node.additionalProperties, `${path}/additionalProperties`, out);
    for (const alt of node.anyOf ?? []) objects(alt, `${path}/anyOf`, out);
    return out;
  }

  test("it names its draft and has a title and description", () => {
    expect(schema.$schema).toBe("https://json-schema.org/draft/2020-12/schema");
    expect(schema.title).toBe("serve-bin config");
    expect(schema.description).toEqual(expect.any(String));
  });

  test("every property has a description", () => {
    const missing = objects(schema).flatMap(([path, o]) =>
      Object.entries(o.properties ?? {})
        .filter(([, p]: [string, any]) => typeof p.description !== "string" || p.description.length < 10)
        .map(([k]) => `${path}/properties/${k}`),
    );
    expect(missing).toEqual([]);
  });

  test("every object with properties refuses unknown keys, like the parser", () => {
    const open = objects(schema)
      .filter(([, o]) => o.properties && o.additionalProperties !== false)
      .map(([p]) => p);
    expect(open).toEqual([]);
  });

  test("only fields without a default are required", () => {
    const app = schema.properties.applications.items;
    expect(schema.required).toBeUndefined();
    expect(app.required).toEqual(["name", "importPath"]);
    expect(app.properties.deployments.items.required).toEqual(["name"]);
    expect(schema.properties.routes.items.required).toEqual(["routePrefix", "split"]);
    expect(schema.properties.proxy.properties.port.default).toBe(8000);
  });

  test("it is plain JSON with no references and nothing unrepresentable", () => {
    const text = JSON.stringify(schema);
    expect(JSON.parse(text)).toEqual(schema);
    expect(text).not.toContain("$ref");
    expect(text).not.toContain('"not"');
    // Patterns are copied into editors' regex engines: no named groups.
    expect(text).not.toContain("(?<");
    for (const [, o] of objects(schema)) for (const p of Object.values(o.properties ?? {}) as any[]) if (p.pattern) new RegExp(p.pattern, "u");
  });
});

describe("diffConfigs", () => {
  const app = (c: ServeConfig) => c.applications[0]!;

  test("the same config twice is an empty diff", () => {
    const d = diffConfigs(parsed(), parsed());
    expect(d).toEqual({ addedApplications: [], removedApplications: [], changedApplications: [], serverRestartNeeded: [], routesChanged: false });
    expect(isEmptyDiff(d)).toBe(true);
  });

  test("from nothing, every application is added", () => {
    expect(diffConfigs(null, parsed())).toEqual({
      addedApplications: ["default", "other"],
      removedApplications: [],
      changedApplications: [],
      serverRestartNeeded: [],
      routesChanged: true,
    });
  });

  const changeOf = (edit: (c: ServeConfig) => void) => {
    const next = parsed();
    edit(next);
    return diffConfigs(parsed(), next).changedApplications;
  };
  const one = (name: string, costs: string[], fields: string[]) => [
    {
      name: "default",
      restart: false,
      routePrefixChanged: false,
      addedDeployments: [],
      removedDeployments: [],
      changedDeployments: [{ name, costs: new Set(costs), fields }],
    },
  ];

  test("a numReplicas change only updates the target", () => {
    expect(changeOf((c) => (app(c).deployments[1]!.numReplicas = 5))).toEqual(one("Model", ["target"], ["numReplicas"]));
  });

  test("a userConfig change is a reconfigure, compared deeply", () => {
    expect(changeOf((c) => (app(c).deployments[1]!.userConfig = { weights: "./weights-v2.json" }))).toEqual(one("Model", ["reconfigure"], ["userConfig"]));
    expect(changeOf((c) => (app(c).deployments[1]!.userConfig = { weights: "./weights-v1.json" }))).toEqual([]);
  });

  test("an env change restarts the deployment", () => {
    expect(changeOf((c) => (app(c).deployments[1]!.env = { OMP_NUM_THREADS: "2" }))).toEqual(one("Model", ["restart"], ["env"]));
  });

  test("several fields at once carry every cost, fields in documented order", () => {
    expect(
      changeOf((c) => {
        app(c).deployments[1]!.env = {};
        app(c).deployments[1]!.userConfig = null;
        app(c).deployments[1]!.numReplicas = 1;
      }),
    ).toEqual(one("Model", ["target", "reconfigure", "restart"], ["numReplicas", "userConfig", "env"]));
  });

  test("an importPath change restarts the application", () => {
    expect(changeOf((c) => (app(c).importPath = "./graph-v2.ts:default"))).toEqual([
      { name: "default", restart: true, routePrefixChanged: false, addedDeployments: [], removedDeployments: [], changedDeployments: [] },
    ]);
  });

  test("a routePrefix change is flagged for the proxy", () => {
    expect(changeOf((c) => (app(c).routePrefix = "/v2")).map((a) => a.routePrefixChanged)).toEqual([true]);
  });

  test("added and removed deployments are listed by name", () => {
    expect(
      changeOf((c) => {
        app(c).deployments = [app(c).deployments[0]!, { name: "Model_1", numReplicas: 1 }];
      }),
    ).toEqual([
      { name: "default", restart: false, routePrefixChanged: false, addedDeployments: ["Model_1"], removedDeployments: ["Model"], changedDeployments: [] },
    ]);
  });

  test("added and removed applications are listed by name", () => {
    const next = parsed();
    next.applications = [next.applications[0]!, { name: "third", importPath: "./third.ts", deployments: [] }];
    next.routes = [];
    expect(diffConfigs(parsed(), next)).toEqual({
      addedApplications: ["third"],
      removedApplications: ["other"],
      changedApplications: [],
      serverRestartNeeded: [],
      routesChanged: true,
    });
  });

  test("server sections changes are listed by field, for a restart", () => {
    const next = parsed();
    next.proxy.port = 9000;
    next.sharedMemory.arenaBytes = 1 << 20;
    expect(diffConfigs(parsed(), next).serverRestartNeeded).toEqual(["proxy.port", "sharedMemory.arenaBytes"]);
  });

  test("resolved configs diff the same way", () => {
    const before = parsed();
    app(before).deployments = [resolvedModel()];
    const after = structuredClone(before);
    app(after).deployments[0]!.maxQueuedRequests = 10;
    expect(diffConfigs(before, after).changedApplications).toEqual(one("Model", ["target"], ["maxQueuedRequests"]));
  });
});

describe("mergeDeploymentPatch", () => {
  const patch = (body: unknown) => {
    const r = validate(deploymentPatchSchema(), body);
    if (!r.ok) throw new Error(formatIssues(r.issues));
    return r.value;
  };

  test("fields given replace, fields left out stay", () => {
    expect(mergeDeploymentPatch(resolvedModel(), patch({ numReplicas: 5, maxOngoingRequests: 8 }))).toEqual(
      resolvedModel({ numReplicas: 5, maxOngoingRequests: 8 }),
    );
  });

  test("userConfig is replaced whole, not merged", () => {
    const current = resolvedModel({ userConfig: { a: 1, b: { c: 2 } } });
    expect(mergeDeploymentPatch(current, patch({ userConfig: { b: { d: 3 } } })).userConfig).toEqual({ b: { d: 3 } });
  });

  test("autoscalingConfig is replaced whole, with its defaults, and null removes it", () => {
    const current = resolvedModel({
      numReplicas: "auto",
      autoscalingConfig: { minReplicas: 2, maxReplicas: 20, targetOngoingRequests: 4, upscaleDelayS: 1, downscaleDelayS: 5 },
    });
    expect(mergeDeploymentPatch(current, patch({ autoscalingConfig: { maxReplicas: 8 } })).autoscalingConfig).toEqual({
      minReplicas: 1,
      maxReplicas: 8,
      targetOngoingRequests: 2,
      upscaleDelayS: 3,
      downscaleDelayS: 60,
    });
    const fixed = mergeDeploymentPatch(current, patch({ numReplicas: 3, autoscalingConfig: null }));
    expect(fixed).toEqual(resolvedModel({ numReplicas: 3 }));
    expect("autoscalingConfig" in fixed).toBe(false);
  });

  test("env merges by variable", () => {
    expect(mergeDeploymentPatch(resolvedModel(), patch({ env: { B: "2" } })).env).toEqual({ A: "1", B: "2" });
  });

  test("a patch leaving the deployment invalid throws an invalid ServeError with the issues", () => {
    let err: unknown;
    try {
      mergeDeploymentPatch(resolvedModel(), patch({ numReplicas: "auto" }));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ServeError);
    expect((err as ServeError).code).toBe("invalid");
    expect((err as ServeError).deployment).toBe("Model");
    expect((err as ServeError).issues).toEqual([{ path: ["numReplicas"], message: expect.stringContaining("needs an autoscalingConfig") }]);
  });

  test("a PATCH body cannot rename a deployment or carry unknown keys", () => {
    expect(validate(deploymentPatchSchema(), { name: "Other" })).toEqual({
      ok: false,
      issues: [{ path: ["name"], message: expect.stringContaining("name cannot be changed") }],
    });
    expect(validate(deploymentPatchSchema(), { replicas: 2 })).toEqual({
      ok: false,
      issues: [{ path: ["replicas"], message: expect.stringContaining('did you mean "numReplicas"?') }],
    });
  });
});

describe("resolveDeployment", () => {
  test("defaults apply under every layer, later layers win", () => {
    expect(resolveDeployment("Model", [{ numReplicas: 2, env: { A: "1" } }, { numReplicas: 3, env: { B: "2" } }])).toEqual({
      name: "Model",
      numReplicas: 3,
      maxOngoingRequests: 5,
      maxQueuedRequests: -1,
      healthCheckPeriodS: 10,
      healthCheckTimeoutS: 30,
      gracefulShutdownTimeoutS: 20,
      env: { A: "1", B: "2" },
    });
  });

  test("the ingress admits 100 requests at once by default", () => {
    expect(resolveDeployment("DAGDriver", [], { ingress: true }).maxOngoingRequests).toBe(100);
    expect(resolveDeployment("DAGDriver", [{ maxOngoingRequests: 7 }], { ingress: true }).maxOngoingRequests).toBe(7);
  });

  test("invalid options throw an invalid ServeError naming the deployment", () => {
    expect(() => resolveDeployment("Model", [{ maxOngoingRequests: 0 }])).toThrow(/deployment "Model" invalid:\nmaxOngoingRequests: expected a whole number ≥ 1/);
  });
});

describe("helpers", () => {
  test("mergeRoutePatch replaces the route with the same prefix or adds one", () => {
    const c = parsed();
    const replaced = mergeRoutePatch(c, { routePrefix: "/classify", split: { default: 1 } });
    expect(replaced.routes).toEqual([{ routePrefix: "/classify", split: { default: 1 } }]);
    const added = mergeRoutePatch(c, { routePrefix: "/b", split: { other: 1 } });
    expect(added.routes.map((r) => r.routePrefix)).toEqual(["/classify", "/b"]);
  });

  test("parseImportPath splits file and export, the export defaulting to default", () => {
    expect(parseImportPath("./graph.ts:app")).toEqual({ file: "./graph.ts", exportName: "app" });
    expect(parseImportPath("graph.js")).toEqual({ file: "graph.js", exportName: "default" });
    expect(parseImportPath("graph.py")).toBeNull();
  });

  test("formatPath writes paths as in code", () => {
    expect(formatPath(["applications", 0, "deployments", 1, "env", "A-B"])).toBe('applications[0].deployments[1].env["A-B"]');
  });

  test("readEnv reads the admin token and the error detail, ignoring empty values", () => {
    expect(readEnv({ SERVE_BIN_ADMIN_TOKEN: "t", SERVE_BIN_ERROR_DETAIL: "message", OTHER: "x" })).toEqual({ adminToken: "t", errorDetail: "message" });
    expect(readEnv({ SERVE_BIN_ADMIN_TOKEN: "" })).toEqual({});
    expect(() => readEnv({ SERVE_BIN_ERROR_DETAIL: "verbose" })).toThrow(/"full".*"message"/);
  });
});
