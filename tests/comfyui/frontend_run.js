// Runs a graph the way a person does it in the real ComfyUI frontend (headless Chromium via playwright-core), for
// tests/comfyui/test_workflows_frontend.py:
//   node frontend_run.js URL blueprint "Nexus-Gen Edit" [--image example.png]
//     adds the subgraph blueprint from the node search box (double-click on the canvas, type its name, Enter),
//     feeds it a Load Image when it has an image input, and wires its image to a Save Image;
//   node frontend_run.js URL workflow path/to/workflow.json
//     opens a workflow as File > Open does;
//   node frontend_run.js URL app path/to/app.json
//     opens an app (a workflow with extra.linearMode, frontend 1.41+) and presses the app's own Run button;
//   node frontend_run.js URL missing-models path/to/workflow.json
//     opens it and prints what the missing-models dialog (or 1.58's issues panel) says, then stops.
// Then it makes the graph small (steps 3, 128x96, reply budget 100 tokens, in subgraphs too), presses Run
// (app.queuePrompt), waits for the prompt in /history and prints one JSON line: {ok, status, images, class_types,
// missing, errors}. Needs NODE_PATH to hold playwright-core and CHROMIUM (default /usr/bin/chromium).
const { chromium } = require('playwright-core');
const fs = require('fs');

const [url, mode, what] = process.argv.slice(2);
const image = process.argv.includes('--image') ? process.argv[process.argv.indexOf('--image') + 1] : 'example.png';
// VUE_NODES=1: under the Vue node renderer (Nodes 2.0, 1.3x+): the result then also says how many nodes the DOM
// drew, each node's text as drawn (vue_text: titles, widget values, streamed text) and SHOT=path.png a screenshot.
const vue = process.env.VUE_NODES === '1';
const SMALL = { steps: 3, width: 128, height: 96, max_new_tokens: 100 };
// FRESH=1: a new seed, so that a host that ran this graph before runs it again instead of answering from its cache.
if (process.env.FRESH === '1') SMALL.seed = Date.now() % 1000000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function closeDialogs(page) {
  for (let i = 0; i < 6; i++) {
    const open = await page.evaluate(() => [...document.querySelectorAll('.p-dialog-mask, [role="dialog"]')]
      .some((e) => e.getBoundingClientRect().width > 0));
    if (!open) return;
    await page.keyboard.press('Escape');
    await page.locator('button[aria-label="Close"], .p-dialog-close-button').first().click({ timeout: 1000 })
      .catch(() => {});
    await sleep(500);
  }
}

async function history() {
  return (await fetch(url + '/history')).json();
}

(async () => {
  const errors = [];
  // As a returning user: no first-run template browser over the canvas, no minimap or side panel over the graph.
  await fetch(url + '/settings', { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ 'Comfy.TutorialCompleted': true, 'Comfy.Minimap.Visible': false,
      'Comfy.RightSidePanel.IsOpen': false, 'Comfy.VueNodes.Enabled': vue }) });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  await page.goto(url + '/', { waitUntil: 'networkidle', timeout: 120000 });
  await page.waitForFunction(() => window.app && window.app.graph && window.app.canvas, null, { timeout: 120000 });
  await sleep(2000);
  await closeDialogs(page);
  page.on('pageerror', (e) => errors.push(String(e).slice(0, 300)));  // from here on: ours (1.27 has its own at start)
  if (mode === 'missing-models') {
    await page.evaluate(async (wf) => { await window.app.loadGraphData(wf); }, JSON.parse(fs.readFileSync(what, 'utf8')));
    await sleep(3000);
    await page.getByText('View details').first().click({ timeout: 3000 }).catch(() => {});  // 1.58: a toast first
    await sleep(2000);
    const text = await page.evaluate(() => document.body.innerText);
    const at = text.indexOf('Missing Models');
    console.log(JSON.stringify({ ok: at >= 0, text: at >= 0 ? text.slice(at, at + 1500) : text.slice(0, 1500) }));
    await browser.close();
    return;
  }
  let appView = null;
  if (mode === 'workflow') {
    await page.evaluate(async (wf) => { await window.app.loadGraphData(wf); }, JSON.parse(fs.readFileSync(what, 'utf8')));
  } else if (mode === 'app') {
    // Opened as File > Open does (a named workflow), so that its own mode (extra.linearMode) applies.
    await page.evaluate(async ([wf, name]) => { await window.app.loadGraphData(wf, true, true, name); },
      [JSON.parse(fs.readFileSync(what, 'utf8')), what.split('/').pop().replace(/\.json$/, '')]);
    await sleep(3000);
    await page.getByRole('button', { name: 'Skip' }).click({ timeout: 3000 }).catch(() => {});  // the apps tour
    await sleep(500);
    appView = await page.evaluate(() => {
      const c = window.app.canvas.canvas;
      return { graph_hidden: !c.offsetParent || c.getBoundingClientRect().width === 0,
        text: document.body.innerText.slice(0, 3000) };
    });
  } else {
    // The node search box, as a person adds a node. The blueprints register a moment after the page loads, so
    // wait for the search to list it, and try again if the first search came too early.
    for (let attempt = 0; attempt < 4; attempt++) {
      await page.evaluate(() => window.app.graph.clear());
      await page.mouse.dblclick(700, 450);
      await sleep(800);
      await page.keyboard.type(what, { delay: 15 });
      await page.waitForFunction((w) => document.body.innerText.includes(w), what, { timeout: 15000 }).catch(() => {});
      await sleep(800);
      await page.keyboard.press('Enter');
      await sleep(2000);
      if (await page.evaluate(() => (window.app.graph._nodes || window.app.graph.nodes).some((n) => n.subgraph))) break;
      await page.keyboard.press('Escape');
      await sleep(3000);
    }
    const wired = await page.evaluate((image) => {
      const graph = window.app.graph;
      const nodes = graph._nodes || graph.nodes;
      const bp = nodes.find((n) => n.subgraph);
      if (!bp) return `no subgraph node was added (nodes: ${nodes.map((n) => n.type)})`;
      const LG = window.LiteGraph;
      const slot = (bp.inputs || []).findIndex((i) => i.type === 'IMAGE');
      if (slot >= 0) {
        const load = LG.createNode('LoadImage');
        load.pos = [bp.pos[0] - 360, bp.pos[1]];
        graph.add(load);
        load.widgets.find((w) => w.name === 'image').value = image;
        load.connect(0, bp, slot);
      }
      const save = LG.createNode('SaveImage');
      save.pos = [bp.pos[0] + bp.size[0] + 60, bp.pos[1]];
      graph.add(save);
      save.widgets.find((w) => w.name === 'filename_prefix').value = 'frontend/blueprint';
      bp.connect(0, save, 0);
      return '';
    }, image);
    if (wired) {
      console.log(JSON.stringify({ ok: false, status: wired, errors }));
      await browser.close();
      process.exit(1);
    }
  }
  const info = await page.evaluate(async (small) => {
    const graph = window.app.graph;
    const known = window.LiteGraph.registered_node_types || {};
    const all = [];
    const walk = (g) => { for (const n of (g._nodes || g.nodes)) { all.push(n); if (n.subgraph) walk(n.subgraph); } };
    walk(graph);
    for (const n of all) {
      for (const w of n.widgets || []) if (w.name in small) w.value = small[w.name];
    }
    const prompt = await window.app.graphToPrompt();
    return {
      missing: all.filter((n) => !n.subgraph && !known[n.type]).map((n) => n.type),
      class_types: Object.values(prompt.output).map((n) => n.class_type),
    };
  }, SMALL);
  if (vue) {  // each node's longest text while the prompt runs: streamed text shows there, and goes when it ends
    await page.evaluate(() => {
      window.__seen = {};
      const look = () => {
        for (const e of document.querySelectorAll('[data-node-id]')) {
          const k = e.getAttribute('data-node-id');
          const t = [e.innerText, ...[...e.querySelectorAll('textarea')].map((a) => a.value)].join('\n').slice(0, 2000);
          if (!window.__seen[k] || t.length > window.__seen[k].length) window.__seen[k] = t;
        }
      };
      new MutationObserver(look).observe(document.body, { subtree: true, childList: true, characterData: true });
      window.__events = [];  // progress_text as the frontend receives it, and the node's text preview just after
      window.app.api.addEventListener('progress_text', (e) => setTimeout(() => {
        const n = (window.app.graph._nodes || window.app.graph.nodes).find((x) => String(x.id) === String(e.detail.nodeId));
        const w = n && (n.widgets || []).find((x) => x.name === '$$node-text-preview');
        window.__events.push({ node: e.detail.nodeId, text: String(e.detail.text).slice(0, 200),
          preview: w ? String(w.value).slice(0, 200) : null });
      }, 0));
    });
  }
  const before = new Set(Object.keys(await history()));
  if (appView) {
    info.app = appView;
    await page.getByRole('button', { name: 'Run', exact: true }).last().click({ timeout: 10000 });  // the app's own
  } else {
    await page.evaluate(async () => { await window.app.queuePrompt(0, 1); });
  }
  let entry = null;
  for (let i = 0; i < 600 && !entry; i++) {
    await sleep(1000);
    const h = await history();
    const id = Object.keys(h).find((k) => !before.has(k) && h[k].status && h[k].status.completed !== undefined
      && ['success', 'error'].includes(h[k].status.status_str));
    if (id) entry = h[id];
    if (i === 20 && !entry) {  // nothing queued at all: the frontend refused it (a validation dialog)
      const q = await (await fetch(url + '/queue')).json();
      if (!q.queue_running.length && !q.queue_pending.length && !Object.keys(await history()).some((k) => !before.has(k))) {
        const dialog = await page.evaluate(() => [...document.querySelectorAll('[role="dialog"], .p-dialog')]
          .map((e) => e.innerText).join(' | ').slice(0, 1500));
        errors.push('nothing was queued: ' + dialog);
        break;
      }
    }
  }
  info.frontend = await page.evaluate(() => window.__COMFYUI_FRONTEND_VERSION__ || null);
  if (vue) {
    await sleep(1500);
    info.vue_text = await page.evaluate(() => Object.fromEntries([...document.querySelectorAll('[data-node-id]')]
      .map((e) => [e.getAttribute('data-node-id'), e.innerText.slice(0, 2000)])));
    info.vue_nodes = Object.keys(info.vue_text).length;
    info.vue_seen_while_running = await page.evaluate(() => window.__seen);
    info.progress_text_events = await page.evaluate(() => window.__events);
    info.graph_nodes = await page.evaluate(() => (window.app.graph._nodes || window.app.graph.nodes).length);
    if (process.env.SHOT) await page.screenshot({ path: process.env.SHOT });
  }
  await sleep(1000);
  // toasts: PrimeVue's (to 1.4x) and 1.5x's own list items with role alert
  info.toasts = await page.evaluate(() => [...document.querySelectorAll('.p-toast-message, li[role="alert"]')]
    .map((e) => e.innerText));
  info.text_previews = await page.evaluate(() => Object.fromEntries((window.app.graph._nodes || window.app.graph.nodes)
    .map((n) => [n.id, (n.widgets || []).find((w) => w.name === '$$node-text-preview')])
    .filter(([, w]) => w).map(([id, w]) => [id, String(w.value).slice(0, 2000)])));
  const images = entry ? Object.values(entry.outputs || {}).flatMap((o) => o.images || []) : [];
  const messages = entry ? (entry.status.messages || []).filter((m) => m[0] === 'execution_error').map((m) => m[1]) : [];
  const texts = entry ? Object.values(entry.outputs || {}).flatMap((o) => o.text || []) : [];
  const result = { ok: !!entry && entry.status.status_str === 'success' && (images.length > 0 || texts.length > 0), texts,
    status: entry ? entry.status.status_str : 'not run', images, ...info, errors,
    execution_error: messages.map((m) => `${m.node_type}: ${m.exception_message}`) };
  console.log(JSON.stringify(result));
  await browser.close();
  process.exit(result.ok ? 0 : 1);
})().catch((e) => { console.error(e); process.exit(2); });
