// Loads workflow files into the real ComfyUI frontend in headless Chromium and reports, per file,
// the node types the frontend does not know and the nodes that show errors; saves a screenshot each.
// Usage: node load_workflows.mjs <server-url> <screenshot-dir> <workflow.json>...
// Prints one JSON object: {"<file>": {"missing": [...], "errors": [...], "nodes": N, "screenshot": path}}
import { chromium } from "playwright-core";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";

const [url, shotDir, ...files] = process.argv.slice(2);
const context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "da-chromium-")), {
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1600, height: 1000 },
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const report = {};
try {
  const page = await context.newPage();
  const pageErrors = [];
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  await page.goto(url, { waitUntil: "load", timeout: 60000 });
  await page.waitForFunction(() => window.app && window.app.graph && window.LiteGraph, null, { timeout: 60000 });
  for (const file of files) {
    const workflow = JSON.parse(readFileSync(file, "utf8"));
    const result = await page.evaluate(async (wf) => {
      const known = new Set(Object.keys(window.LiteGraph.registered_node_types));
      const missing = [...new Set(wf.nodes.map((n) => n.type).filter((t) => !known.has(t)))];
      await window.app.loadGraphData(wf, true, true, "probe");
      await new Promise((resolve) => setTimeout(resolve, 500));
      const nodes = window.app.graph.nodes;
      const errors = nodes.filter((n) => n.has_errors).map((n) => `${n.id}:${n.type}`);
      let promptError = null;
      try {
        await window.app.graphToPrompt();
      } catch (error) {
        promptError = String(error);
      }
      return { missing, errors, nodes: nodes.length, promptError };
    }, workflow);
    result.screenshot = join(shotDir, basename(file).replace(/\.json$/, ".png"));
    await page.screenshot({ path: result.screenshot });
    report[file] = result;
  }
  report.pageErrors = pageErrors;
} finally {
  await context.close();
}
console.log(JSON.stringify(report));
