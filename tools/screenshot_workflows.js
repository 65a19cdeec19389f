// Screenshots of the example workflows in the real ComfyUI frontend (headless Chromium), used as the workflows'
// same-stem .jpg thumbnails and in the README. Also reports node types the frontend does not know (missing nodes).
//   npm install playwright-core
//   COMFY_URL=http://127.0.0.1:8188 CHROMIUM=/usr/bin/chromium node tools/screenshot_workflows.js workflows/*.json
// Writes <workflow>.jpg next to each JSON (2560x1440; shrink afterwards if wanted). Exit code 1 on missing nodes.
const { chromium } = require('playwright-core');
const fs = require('fs');

const url = process.env.COMFY_URL || 'http://127.0.0.1:8188';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport: { width: 2560, height: 1440 } });
  await page.goto(url + '/', { waitUntil: 'networkidle', timeout: 120000 });
  await page.waitForFunction(() => window.app && window.app.graph, null, { timeout: 120000 });
  await sleep(2000);
  const closeDialog = () => page.locator('button[aria-label="Close"], .p-dialog-close-button').first()
    .click({ timeout: 5000 }).catch(() => {});
  await closeDialog();  // the first-run template browser
  let missingAny = false;
  for (const file of process.argv.slice(2)) {
    const wf = JSON.parse(fs.readFileSync(file, 'utf8'));
    const result = await page.evaluate(async (wf) => {
      await window.app.loadGraphData(wf);
      await new Promise((r) => setTimeout(r, 1500));
      const known = window.LiteGraph ? window.LiteGraph.registered_node_types : {};
      const nodes = window.app.graph._nodes || window.app.graph.nodes;
      return { nodes: nodes.length, missing: nodes.filter((n) => !known[n.type]).map((n) => n.type) };
    }, wf);
    await page.mouse.click(1280, 1400);
    await page.keyboard.press('.');  // fit the view to the graph
    await sleep(1200);
    const out = file.replace(/\.json$/, '.jpg');
    await page.screenshot({ path: out, type: 'jpeg', quality: 82 });
    missingAny = missingAny || result.missing.length > 0;
    console.log(JSON.stringify({ file, ...result, screenshot: out }));
  }
  await browser.close();
  process.exit(missingAny ? 1 : 0);
})().catch((e) => { console.error(e); process.exit(2); });
