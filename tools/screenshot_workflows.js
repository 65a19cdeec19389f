// Loads the example workflows into the real ComfyUI frontend (headless Chromium), checks them, and writes their
// same-stem .jpg thumbnails (the graph only, cropped to its nodes and groups, without the browser's bars).
//   npm install --prefix /somewhere/outside/the/repo playwright-core      (and a Chromium, e.g. Debian's chromium)
//   NODE_PATH=/somewhere/outside/the/repo/node_modules COMFY_URL=http://127.0.0.1:8291 CHROMIUM=/usr/bin/chromium \
//     node tools/screenshot_workflows.js [--no-thumbnails] [--views DIR] workflows/*.json
// Per workflow it prints one JSON line: node types the frontend does not know (missing), overlapping nodes, nodes
// outside every group, and nodes not fully visible when the workflow opens (at 1920x1080 and 1366x768: under the
// menu, tab or side bars, or off screen), and whether the frontend draws their text at the opening zoom. --views DIR
// also saves those opening views as PNGs; --locale zh opens the frontend in that language. Exit code 1 when any
// check fails, 2 on an error.
const { chromium } = require('playwright-core');
const fs = require('fs');
const path = require('path');

const url = process.env.COMFY_URL || 'http://127.0.0.1:8188';
const args = process.argv.slice(2);
const thumbnails = !args.includes('--no-thumbnails');
const viewsAt = args.includes('--views') ? args[args.indexOf('--views') + 1] : null;
const locale = args.includes('--locale') ? args[args.indexOf('--locale') + 1] : null;
const files = args.filter((a, i) => a.endsWith('.json') && args[i - 1] !== '--views');
const SCREENS = [[1920, 1080], [1366, 768]];
const THUMB_SCALE = 0.75;  // canvas zoom of the thumbnails: legible, and a few hundred KB at most
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function openComfy(browser, width, height) {
  const page = await browser.newPage({ viewport: { width, height } });
  await page.goto(url + '/', { waitUntil: 'networkidle', timeout: 120000 });
  await page.waitForFunction(() => window.app && window.app.graph && window.app.canvas, null, { timeout: 120000 });
  await sleep(1500);
  await closeDialogs(page);
  return page;
}

// The first-run template browser (and any other dialog) would cover the canvas.
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

// Loads a workflow as File > Open does; returns what the frontend made of it, in graph and screen coordinates.
async function load(page, wf) {
  return page.evaluate(async (wf) => {
    await window.app.loadGraphData(wf);
    await new Promise((r) => setTimeout(r, 1500));
    const LG = window.LiteGraph;
    const known = LG.registered_node_types || {};
    const graph = window.app.graph;
    const nodes = graph._nodes || graph.nodes;
    const ds = window.app.canvas.ds;
    const title = LG.NODE_TITLE_HEIGHT || 30;
    const rect = (n) => [n.pos[0], n.pos[1] - title, n.size[0], n.size[1] + title];
    const groups = (graph._groups || graph.groups || []).map((g) => ({ title: g.title, r: [...(g._bounding || g.bounding)] }));
    const toScreen = ([x, y, w, h]) => [(x + ds.offset[0]) * ds.scale, (y + ds.offset[1]) * ds.scale, w * ds.scale, h * ds.scale];
    const canvasBox = window.app.canvas.canvas.getBoundingClientRect();
    const isGraph = (el) => !!el && (el === window.app.canvas.canvas || !!el.closest('.dom-widget, .comfy-markdown, .lg-node, .graph-canvas-container .dom-widget-container, [class*="dom-widget"], textarea'));
    const hidden = [];
    for (const n of nodes) {
      const [sx, sy, sw, sh] = toScreen(rect(n));
      const pts = [[sx + 4, sy + 4], [sx + sw - 4, sy + 4], [sx + 4, sy + sh - 4], [sx + sw - 4, sy + sh - 4]];
      const bad = pts.map(([x, y]) => [x + canvasBox.x, y + canvasBox.y]).filter(([x, y]) => {
        if (x < 0 || y < 0 || x >= window.innerWidth || y >= window.innerHeight) return true;
        return !isGraph(document.elementFromPoint(x, y));
      });
      if (bad.length) {
        const el = document.elementFromPoint(Math.max(0, bad[0][0]), Math.max(0, bad[0][1]));
        hidden.push(`${n.type}#${n.id} (${el ? el.tagName + '.' + String(el.className).slice(0, 40) : 'off screen'})`);
      }
    }
    // Below the frontend's level-of-detail zoom nodes are drawn without titles, widget text or note text (1.58:
    // 8 px of a 14 px node font, i.e. a zoom of about 0.57; older frontends: low_quality_zoom_threshold, 0.6).
    const c = window.app.canvas;
    const threshold = c._lowQualityZoomThreshold || c.low_quality_zoom_threshold || 0.6;
    return {
      nodes: nodes.map((n) => ({ id: n.id, type: n.type, r: rect(n) })),
      groups, hidden, scale: ds.scale, lowQuality: c.low_quality === true || ds.scale < threshold,
      missing: nodes.filter((n) => !known[n.type]).map((n) => n.type),
    };
  }, wf);
}

function overlaps(nodes) {
  const out = [];
  for (let i = 0; i < nodes.length; i++) {
    for (let j = i + 1; j < nodes.length; j++) {
      const [a, b] = [nodes[i].r, nodes[j].r];
      if (a[0] < b[0] + b[2] && b[0] < a[0] + a[2] && a[1] < b[1] + b[3] && b[1] < a[1] + a[3]) {
        out.push(`${nodes[i].type}#${nodes[i].id} x ${nodes[j].type}#${nodes[j].id}`);
      }
    }
  }
  return out;
}

function outsideGroups(nodes, groups) {
  const inside = (r, g) => r[0] >= g[0] && r[1] >= g[1] && r[0] + r[2] <= g[0] + g[2] && r[1] + r[3] <= g[1] + g[3];
  return nodes.filter((n) => !['MarkdownNote', 'Note'].includes(n.type) && !groups.some((g) => inside(n.r, g.r)))
    .map((n) => `${n.type}#${n.id}`);
}

async function thumbnail(page, out) {
  // Zoom to THUMB_SCALE and move the graph clear of the menus, then crop the screenshot to it.
  const box = await page.evaluate(() => {
    const graph = window.app.graph;
    const LG = window.LiteGraph;
    const title = LG.NODE_TITLE_HEIGHT || 30;
    const rs = (graph._nodes || graph.nodes).map((n) => [n.pos[0], n.pos[1] - title, n.size[0], n.size[1] + title])
      .concat((graph._groups || graph.groups || []).map((g) => [...(g._bounding || g.bounding)]));
    const x0 = Math.min(...rs.map((r) => r[0])), y0 = Math.min(...rs.map((r) => r[1]));
    const x1 = Math.max(...rs.map((r) => r[0] + r[2])), y1 = Math.max(...rs.map((r) => r[1] + r[3]));
    return { x0, y0, w: x1 - x0, h: y1 - y0 };
  });
  const margin = 16, at = 160;
  const w = Math.ceil(box.w * THUMB_SCALE), h = Math.ceil(box.h * THUMB_SCALE);
  await page.setViewportSize({ width: w + 2 * at + 200, height: h + 2 * at + 200 });
  await sleep(500);
  await page.evaluate(([box, scale, at]) => {
    const ds = window.app.canvas.ds;
    ds.scale = scale;
    ds.offset[0] = at / scale - box.x0;
    ds.offset[1] = at / scale - box.y0;
    window.app.canvas.setDirty(true, true);
  }, [box, THUMB_SCALE, at]);
  await page.mouse.move(1, 1);
  await sleep(1200);
  const canvasBox = await page.evaluate(() => { const r = window.app.canvas.canvas.getBoundingClientRect(); return [r.x, r.y]; });
  await page.screenshot({ path: out, type: 'jpeg', quality: 72,
    clip: { x: canvasBox[0] + at - margin, y: canvasBox[1] + at - margin, width: w + 2 * margin, height: h + 2 * margin } });
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  // As a returning user: no first-run template browser over the canvas, no minimap or side panel over the graph.
  await fetch(url + '/settings', { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ 'Comfy.TutorialCompleted': true, 'Comfy.Minimap.Visible': false,
      'Comfy.RightSidePanel.IsOpen': false, 'Comfy.Locale': locale || 'en' }) });
  const version = await (await fetch(url + '/system_stats')).json().then((s) => s.system && s.system.comfyui_version)
    .catch(() => '?');
  let failed = false;
  const pages = [];
  for (const [w, h] of SCREENS) pages.push(await openComfy(browser, w, h));
  for (const file of files) {
    const wf = JSON.parse(fs.readFileSync(file, 'utf8'));
    const report = { file, comfyui: version };
    for (const [k, page] of pages.entries()) {
      await closeDialogs(page);
      const got = await load(page, wf);
      const tag = SCREENS[k].join('x');
      if (k === 0) {
        Object.assign(report, { nodes: got.nodes.length, missing: got.missing, overlaps: overlaps(got.nodes),
          outside_groups: outsideGroups(got.nodes, got.groups) });
      }
      report[`hidden_on_open_${tag}`] = got.hidden;
      report[`scale_on_open_${tag}`] = Math.round(got.scale * 100) / 100;
      report[`text_drawn_on_open_${tag}`] = !got.lowQuality;
      failed = failed || got.hidden.length > 0 || got.lowQuality;
      if (viewsAt) {
        fs.mkdirSync(viewsAt, { recursive: true });
        await page.screenshot({ path: path.join(viewsAt, `${path.basename(file, '.json')}-${tag}${locale ? '-' + locale : ''}.png`) });
      }
    }
    if (thumbnails) {
      report.thumbnail = file.replace(/\.json$/, '.jpg');
      const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
      await page.goto(url + '/', { waitUntil: 'networkidle', timeout: 120000 });
      await page.waitForFunction(() => window.app && window.app.canvas, null, { timeout: 120000 });
      await sleep(1000);
      await closeDialogs(page);
      await load(page, wf);
      await thumbnail(page, report.thumbnail);
      await page.close();
    }
    failed = failed || report.missing.length > 0 || report.overlaps.length > 0 || report.outside_groups.length > 0;
    console.log(JSON.stringify(report));
  }
  await browser.close();
  process.exit(failed ? 1 : 0);
})().catch((e) => { console.error(e); process.exit(2); });
