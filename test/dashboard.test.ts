/**
 * The live dashboard (SPEC §10) in a real headless Chromium, against the
 * compiled binary: the tutorial's graph drawn as bound, counts moving under
 * load, Model scaled to 3 from the page, a refused userConfig shown with its
 * message. Screenshots go to test-output/.
 *
 * Needs Debian's `chromium` (.ci/run installs it); without it every test
 * here is skipped, loudly.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import type { StatusJSON } from "../src/runtime/control/status.ts";
import { EXAMPLES, ROOT, startServer, waitFor, type RunningServer } from "./harness.ts";
import { startLoad } from "./load.ts";

const CHROMIUM = [process.env.CHROMIUM_PATH, "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].find((p) => p && existsSync(p));
if (!CHROMIUM) console.warn("\n*** test/dashboard.test.ts SKIPPED: no Chromium found (apt-get install -y chromium, or set CHROMIUM_PATH) ***\n");

const SHOTS = join(ROOT, "test-output");
const TOKEN = "dash-t0ken";

async function shot(page: Page, name: string): Promise<void> {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, name), fullPage: true });
}

/** A number the page shows on a node, read from a data attribute. */
function nodeAttr(page: Page, deployment: string, attr: string): Promise<string | null> {
  return page.$eval(`.node[data-deployment="${deployment}"]`, (el, a) => el.getAttribute(a), attr);
}

describe.skipIf(!CHROMIUM)("the dashboard of the tutorial graph", () => {
  let server: RunningServer;
  let browser: Browser;
  let page: Page;
  beforeAll(async () => {
    server = await startServer(join(EXAMPLES, "tutorial/graph.ts"), { compiled: true, args: ["--admin-token", TOKEN] });
    browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
    page = await browser.newPage();
    await page.setViewport({ width: 1100, height: 760 });
  });
  afterAll(async () => {
    await browser?.close();
    expect(await server?.stop()).toBe(0);
  });

  it("draws every deployment (the ingress first) and every edge, with the token given once in the fragment and then kept out of the URL", async () => {
    await page.goto(`${server.adminUrl}/#token=${TOKEN}`);
    await page.waitForFunction(() => document.querySelectorAll(".node[data-running]").length === 6, { timeout: 30_000 });
    const nodes = await page.$$eval(".node", (els) => els.map((e) => e.getAttribute("data-deployment")));
    expect(nodes).toEqual(["DAGDriver", "preprocessor", "avgPreprocessor", "Combiner", "Model", "Model_1"]);
    expect(await nodeAttr(page, "DAGDriver", "data-ingress")).toBe("true");
    const edges = await page.$$eval("svg.edges path[data-edge]", (els) => els.map((e) => `${e.getAttribute("data-edge")} ${e.getAttribute("data-kind")}`));
    expect(edges.sort()).toEqual(
      [
        "DAGDriver->preprocessor call",
        "DAGDriver->avgPreprocessor call",
        "DAGDriver->Combiner call",
        "Combiner->Model handle",
        "Combiner->Model_1 handle",
        "preprocessor->Combiner data",
        "avgPreprocessor->Combiner data",
      ].sort(),
    );
    expect(page.url()).toBe(`${server.adminUrl}/`);
    expect(await page.$eval("#conn", (e) => e.getAttribute("data-state"))).toBe("live");
    await page.waitForFunction(() => document.querySelector('.node[data-deployment="DAGDriver"]')?.getAttribute("data-running") === "2");
    await shot(page, "dashboard-tutorial.png");
  });

  it("shows request counts and rates moving while load runs", async () => {
    const before = Number(await nodeAttr(page, "Model", "data-requests"));
    const load = startLoad({ url: `${server.url}/my-dag`, body: ["5", [1, 2], "sum"], loops: 6 });
    try {
      for (const d of ["DAGDriver", "preprocessor", "avgPreprocessor", "Combiner", "Model", "Model_1"]) {
        await page.waitForFunction((name, n) => Number(document.querySelector(`.node[data-deployment="${name}"]`)?.getAttribute("data-requests")) >= n, { timeout: 30_000 }, d, before + 10);
      }
      await page.waitForFunction(() => Number(document.querySelector('.node[data-deployment="Model"] [data-role="rps"]')?.textContent) > 0, { timeout: 30_000 });
      const p50 = await page.$eval('.node[data-deployment="Model"] [data-role="p50"]', (e) => e.textContent);
      expect(p50).toMatch(/^\d+(\.\d)? ms$/);
      await shot(page, "dashboard-under-load.png");
    } finally {
      expect((await load.stop()).failed).toBe(0);
    }
  });

  it("scales Model to 3 replicas from the page, through the admin PATCH", async () => {
    const up = '.node[data-deployment="Model"] button[data-action="up"]';
    for (const n of [2, 3]) {
      await page.waitForFunction((sel) => !(document.querySelector(sel) as HTMLButtonElement).disabled, {}, up);
      await page.click(up);
      await page.waitForFunction((want) => document.querySelector('.node[data-deployment="Model"]')?.getAttribute("data-target") === want, { timeout: 30_000 }, String(n));
    }
    await page.waitForFunction(() => document.querySelectorAll('.node[data-deployment="Model"] .dot[data-state="RUNNING"]').length === 3, { timeout: 30_000 });
    expect(await nodeAttr(page, "Model", "data-running")).toBe("3");
    // The node's "scaling to 3" note goes once the three serve.
    await page.waitForFunction(() => document.querySelector('.node[data-deployment="Model"] [data-role="message"]')?.textContent === "");
    const status = (await (await fetch(`${server.adminUrl}/api/applications`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as StatusJSON;
    expect(status.applications.default!.deployments.Model!.replicas.map((r) => r.state)).toEqual(["RUNNING", "RUNNING", "RUNNING"]);
    await shot(page, "dashboard-model-scaled-to-3.png");
  });

  it("asks for the token when the page was opened without one, and serves no data before it is given", async () => {
    const fresh = await browser.createBrowserContext();
    try {
      const p = await fresh.newPage();
      await p.goto(`${server.adminUrl}/`);
      await p.waitForSelector("#login:not([hidden])");
      expect(await p.$$(".node")).toHaveLength(0);
      expect((await fetch(`${server.adminUrl}/api/dashboard`)).status).toBe(401);
      expect((await fetch(`${server.adminUrl}/api/dashboard/events`)).status).toBe(401);
      await p.type("#token", TOKEN);
      await p.click("#login button");
      await p.waitForFunction(() => document.querySelectorAll(".node[data-running]").length === 6, { timeout: 30_000 });
    } finally {
      await fresh.close();
    }
  });
});

describe.skipIf(!CHROMIUM)("the dashboard's refusals", () => {
  it("shows the refusal message of a userConfig whose reconfigure() throws, and of a replica count below 0", async () => {
    await using server = await startServer(join(ROOT, "test/fixtures/ops-model.ts"), { compiled: true });
    const browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
    try {
      const page = await browser.newPage();
      await page.setViewport({ width: 1000, height: 600 });
      await page.goto(`${server.adminUrl}/`);
      await page.waitForSelector('.node[data-deployment="Model"][data-running="1"]', { timeout: 30_000 });
      await page.click('.node[data-deployment="Model"] button[data-action="config"]');
      await page.waitForSelector("#editor:not([hidden])");
      expect(JSON.parse(await page.$eval("#editor-text", (e) => (e as HTMLTextAreaElement).value))).toEqual({ weights: "w1" });
      await page.$eval("#editor-text", (e) => ((e as HTMLTextAreaElement).value = '{ "weights": "bad" }'));
      await page.click("#editor-apply");
      await page.waitForFunction(() => document.querySelector("#editor-msg")?.className.includes("error"), { timeout: 30_000 });
      expect(await page.$eval("#editor-msg", (e) => e.textContent)).toMatch(/^refused: reconfigure\(\) of Model failed on replica Model#0.*weights "bad" cannot be loaded/);
      await shot(page, "dashboard-refused-userconfig.png");
      // A good one applies, and the page says so.
      await page.$eval("#editor-text", (e) => ((e as HTMLTextAreaElement).value = '{ "weights": "w2" }'));
      await page.click("#editor-apply");
      await page.waitForFunction(() => document.querySelector("#editor-msg")?.textContent === "applied to every replica of Model", { timeout: 30_000 });
      const answer = (await (await fetch(`${server.url}/m`, { method: "POST", body: JSON.stringify({ x: 1 }) })).json()) as { weights: string };
      expect(answer.weights).toBe("w2");
      // 1 → 0 is allowed; 0 → -1 is refused by the PATCH's validation, and the node says why.
      const down = '.node[data-deployment="Model"] button[data-action="down"]';
      await page.click(down);
      await page.waitForSelector('.node[data-deployment="Model"][data-target="0"]', { timeout: 30_000 });
      await page.waitForFunction((sel) => !(document.querySelector(sel) as HTMLButtonElement).disabled, {}, down);
      await page.click(down);
      await page.waitForFunction(() => document.querySelector('.node[data-deployment="Model"] [data-role="message"]')?.className.includes("error"), { timeout: 30_000 });
      expect(await page.$eval('.node[data-deployment="Model"] [data-role="message"]', (e) => e.textContent)).toMatch(/^refused: the patch is invalid; nothing was changed:\n.*numReplicas/);
    } finally {
      await browser.close();
    }
  });
});
