// Browser end-to-end test of the lorafuse page, in headless Debian chromium driven by playwright-core.
//
//   node tests/e2e/app.test.mjs [dist-folder]     (default: dist; scripts/e2e builds it first)
//
// A plain Node script, no test runner: it serves the built page itself (node:http on 127.0.0.1, a free
// port), walks through the page (steps a–l below), saves a full-page screenshot after each step to
// tests/e2e/artifacts/NN-step.png, prints one timing line per step, and exits with status 1 and the
// name of the failing step on the first failure. It fails on any request that leaves the page's own
// origin, on an uncaught page error, and on a Rust panic message in the page's or a worker's console.
// The main path (create, upload, train, fuse, type, evaluate, download) is walked by keyboard alone,
// and axe-core (tests/e2e/a11y.mjs) checks the page empty, training, fused and with the report.
//
// Environment:
//   LORAFUSE_E2E_TIMEOUT_SCALE=2   multiply every timeout (slow machines)
//   LORAFUSE_E2E_WEBGPU=1          add --enable-unsafe-webgpu (SwiftShader WebGPU adapter)
//   LORAFUSE_E2E_CHROMIUM=path     browser binary (default /usr/bin/chromium)
//   LORAFUSE_E2E_VERBOSE=1         list every request the page made
//
// The page's selector contract is listed with each step.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import zlib from 'node:zlib';
import { chooseFileByKeyboard, describeViolations, runAxe, tabTo } from './a11y.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const FIXTURES = path.join(ROOT, 'tests', 'fixtures', 'data');
const ARTIFACTS = path.join(HERE, 'artifacts');

const SCALE = Number(process.env.LORAFUSE_E2E_TIMEOUT_SCALE || 1) || 1;
const T = {
  modelLoad: 180_000 * SCALE,
  training: 400_000 * SCALE,
  ui: 30_000 * SCALE,
  live: 120_000 * SCALE,
  evaluate: 400_000 * SCALE,
  restore: 180_000 * SCALE,
  responsive: 2_000, // the page must answer page.evaluate within this while training
};

// The two tasks of the test, their upload files and class names (as in the CSV files).
const TASKS = [
  { name: 'sentiment', file: 'e2e_sentiment.csv', classes: ['negative', 'positive'] },
  { name: 'subjectivity', file: 'e2e_subjectivity.csv', classes: ['objective', 'subjective'] },
];
// e2e_malformed.csv: empty text on line 6, three fields on line 8, empty label on line 10.
const MALFORMED_LINES = [6, 8, 10];
// sha256 of the default model's weights (src/engine.rs DEFAULT_MODEL_FILES, scripts/setup).
// The weights the page downloads: the default model in F16 (scripts/setup; src/engine.rs DEFAULT_MODEL_F16).
const WEIGHTS = 'model.f16.safetensors';
const MODEL_SHA256 = '355f3c87107974ad482cbd163e883eab94100120ab21e0da353d3e307f54217f';
const LIVE_TEXT = 'a wonderful, moving film that I loved';
const PEFT_KEY =
  /^base_model\.model\.encoder\.layer\.\d+\.attention\.self\.(query|key|value)\.lora_[AB]\.weight$/;

// ---------------------------------------------------------------------------------------------
// Static file server for the built page.

export const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.webmanifest': 'application/manifest+json',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.csv': 'text/csv; charset=utf-8',
  '.safetensors': 'application/octet-stream',
  '.bin': 'application/octet-stream',
};

/** The headers that make a page cross-origin isolated (SharedArrayBuffer, so wasm threads). */
export const ISOLATION = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

/**
 * Serves `root` on 127.0.0.1 (a free port). Resolves to { server, origin, log, setDown }.
 * setDown(true) makes the server drop every connection without an answer (a network error in the
 * browser, as with no network at all) until setDown(false); those requests are logged with status 0.
 */
export function startServer(root, { headers = {} } = {}) {
  const base = path.resolve(root);
  const log = []; // { method, path, status }
  let down = false;
  const server = http.createServer((req, res) => {
    if (down) {
      log.push({ method: req.method, path: req.url, status: 0 });
      req.socket.destroy();
      return;
    }
    const send = (status, body, type = 'text/plain; charset=utf-8') => {
      log.push({ method: req.method, path: req.url, status });
      res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-cache', ...headers });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed\n');
    let rel;
    try {
      rel = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    } catch {
      return send(400, 'bad request\n');
    }
    if (rel.endsWith('/')) rel += 'index.html';
    const file = path.resolve(base, '.' + rel);
    if (file !== base && !file.startsWith(base + path.sep)) return send(403, 'forbidden\n');
    fs.stat(file, (err, st) => {
      if (err || !st.isFile()) return send(404, 'not found\n');
      const type = MIME[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
      // Revalidation as static servers do it (trunk serve too): Last-Modified, and 304 Not Modified
      // for a copy that is still current, so a revalidated file is not sent twice.
      const modified = new Date(Math.floor(st.mtimeMs / 1000) * 1000);
      const since = Date.parse(req.headers['if-modified-since'] ?? '');
      if (!Number.isNaN(since) && since >= modified.getTime()) {
        log.push({ method: req.method, path: req.url, status: 304 });
        res.writeHead(304, { 'Last-Modified': modified.toUTCString(), 'Cache-Control': 'no-cache', ...headers });
        return res.end();
      }
      log.push({ method: req.method, path: req.url, status: 200 });
      res.writeHead(200, {
        'Content-Type': type,
        'Content-Length': st.size,
        'Cache-Control': 'no-cache',
        'Last-Modified': modified.toUTCString(),
        ...headers,
      });
      if (req.method === 'HEAD') return res.end();
      fs.createReadStream(file).pipe(res);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolve({ server, origin: `http://127.0.0.1:${port}`, log, setDown: (d) => { down = d; } });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Zip and safetensors readers (no extra npm packages).

/** Reads a zip archive (stored or deflated entries, no zip64) into Map<name, Buffer>. */
export function readZip(buf) {
  const EOCD = 0x06054b50, CEN = 0x02014b50, LOC = 0x04034b50;
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 22 - 0xffff); i--) {
    if (buf.readUInt32LE(i) === EOCD) { eocd = i; break; }
  }
  if (eocd < 0) throw new Error('not a zip file (no end-of-central-directory record)');
  const count = buf.readUInt16LE(eocd + 10);
  let p = buf.readUInt32LE(eocd + 16);
  if (count === 0xffff || p === 0xffffffff) throw new Error('zip64 archives are not supported');
  const out = new Map();
  for (let n = 0; n < count; n++) {
    if (buf.readUInt32LE(p) !== CEN) throw new Error(`bad central directory entry ${n}`);
    const method = buf.readUInt16LE(p + 10);
    const csize = buf.readUInt32LE(p + 20);
    const usize = buf.readUInt32LE(p + 24);
    const nlen = buf.readUInt16LE(p + 28), xlen = buf.readUInt16LE(p + 30), clen = buf.readUInt16LE(p + 32);
    const local = buf.readUInt32LE(p + 42);
    const name = buf.subarray(p + 46, p + 46 + nlen).toString('utf8');
    p += 46 + nlen + xlen + clen;
    if (name.endsWith('/')) continue; // a folder
    if (buf.readUInt32LE(local) !== LOC) throw new Error(`bad local header for ${name}`);
    const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
    const raw = buf.subarray(start, start + csize);
    let data;
    if (method === 0) data = Buffer.from(raw);
    else if (method === 8) data = zlib.inflateRawSync(raw);
    else throw new Error(`${name}: unsupported compression method ${method}`);
    if (data.length !== usize) throw new Error(`${name}: ${data.length} bytes, expected ${usize}`);
    out.set(name, data);
  }
  return out;
}

/** Parses a safetensors file: { header, tensors: [{ name, dtype, shape, bytes }] }; checks offsets. */
export function readSafetensorsHeader(buf) {
  if (buf.length < 8) throw new Error('safetensors file shorter than 8 bytes');
  const n = buf.readBigUInt64LE(0);
  if (n > BigInt(buf.length - 8)) throw new Error(`safetensors header length ${n} > file size`);
  const header = JSON.parse(buf.subarray(8, 8 + Number(n)).toString('utf8'));
  const dataLen = buf.length - 8 - Number(n);
  const tensors = [];
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [a, b] = t.data_offsets;
    if (!(0 <= a && a <= b && b <= dataLen)) throw new Error(`${name}: data_offsets ${a}..${b} outside ${dataLen} bytes`);
    tensors.push({ name, dtype: t.dtype, shape: t.shape, bytes: b - a });
  }
  return { header, tensors };
}

// ---------------------------------------------------------------------------------------------
// Browser.

export function chromiumArgs() {
  const args = [
    '--no-sandbox',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-quic',
    '--no-first-run',
    '--disable-dev-shm-usage', // containers often have a small /dev/shm
    // Nothing but the test server may be reached: any other host name fails to resolve at once
    // (the request is still recorded and fails the network check).
    '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1',
  ];
  if (process.env.LORAFUSE_E2E_WEBGPU === '1') args.push('--enable-unsafe-webgpu');
  return args;
}

/** A persistent context in a fresh user-data dir (IndexedDB/Cache storage survive a reload). */
export async function launchBrowser() {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'lorafuse-e2e-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.LORAFUSE_E2E_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: chromiumArgs(),
    acceptDownloads: true,
    viewport: { width: 1280, height: 900 },
  });
  const close = async () => {
    await context.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
  };
  return { context, close };
}

// ---------------------------------------------------------------------------------------------
// The test.

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const secs = (ms) => (ms / 1000).toFixed(1) + ' s';
const q = (name) => `section[data-task="${name}"]`;

class StepError extends Error {}
const check = (cond, msg) => { if (!cond) throw new StepError(msg); };

// Console errors the test tolerates: known browser noise, each with its reason. Anything else
// logged as an error by the page or a worker fails the test.
const CONSOLE_ERROR_ALLOW = [
  // Chromium without a GPU says so when the page asks navigator.gpu for an adapter.
  /No available adapters/i,
];

async function main() {
  const dist = path.resolve(process.argv[2] ?? 'dist');
  if (!fs.existsSync(path.join(dist, 'index.html'))) {
    console.error(`error: ${dist}/index.html not found (build the page: trunk build --offline --release)`);
    process.exit(1);
  }
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  for (const f of fs.readdirSync(ARTIFACTS)) fs.rmSync(path.join(ARTIFACTS, f), { force: true });

  // Cross-origin isolation, as ./scripts/serve sends it: the CPU engine runs on a thread pool.
  const { server, origin, log: serverLog, setDown: setServerDown } = await startServer(dist, { headers: ISOLATION });
  console.log(`serving ${dist} at ${origin}`);
  const { context, close } = await launchBrowser();
  console.log(`chromium ${context.browser()?.version() ?? '(persistent context)'}, args: ${chromiumArgs().join(' ')}`);

  // -- everything the page does that the test watches
  const requests = [];
  const consoleLines = []; // all console messages, page and workers
  const consoleErrors = [];
  const pageErrors = [];
  let rejectFatal;
  const fatal = new Promise((_, reject) => { rejectFatal = reject; });
  fatal.catch(() => {});
  const onConsole = (where) => (msg) => {
    const line = `[${where} ${msg.type()}] ${msg.text()}`;
    consoleLines.push(line);
    if (msg.type() === 'error') consoleErrors.push(line);
    if (/panicked at|RuntimeError: unreachable/.test(msg.text())) {
      rejectFatal(new StepError(`Rust panic in the ${where}: ${msg.text()}`));
    }
  };
  context.on('request', (r) => requests.push(r.url()));
  // Content-Security-Policy violations in the page, from its first script on.
  await context.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) =>
      window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile ?? ''}:${e.lineNumber ?? ''}`));
  });
  const page = context.pages()[0] ?? (await context.newPage());
  // The page's console also carries its workers' messages (msg.worker() tells them apart).
  page.on('console', (msg) => onConsole(msg.worker?.() ? 'worker' : 'page')(msg));
  page.on('worker', (w) => consoleLines.push(`[worker] started ${w.url()}`));
  page.on('pageerror', (err) => {
    pageErrors.push(String(err.stack || err));
    rejectFatal(new StepError(`uncaught page error: ${err.message}`));
  });
  page.on('crash', () => rejectFatal(new StepError('the page crashed')));

  // -- helpers
  let stepNo = 0;
  const started = Date.now();
  async function step(name, fn) {
    stepNo += 1;
    const tag = `${String(stepNo).padStart(2, '0')}-${name}`;
    const t0 = Date.now();
    try {
      await Promise.race([fn(), fatal]);
    } catch (err) {
      await page.screenshot({ path: path.join(ARTIFACTS, `${tag}-FAILED.png`), fullPage: true }).catch(() => {});
      err.step = tag;
      throw err;
    }
    await page.screenshot({ path: path.join(ARTIFACTS, `${tag}.png`), fullPage: true }).catch(() => {});
    console.log(`ok   ${tag.padEnd(24)} ${secs(Date.now() - t0).padStart(8)}   (total ${secs(Date.now() - started)})`);
  }
  const text = async (sel) => ((await page.locator(sel).first().textContent({ timeout: T.ui })) ?? '').trim();

  async function waitModelReady() {
    const handle = await page.waitForFunction(
      () => {
        const t = document.querySelector('[data-testid=model-status]')?.textContent ?? '';
        if (/\b(error|failed)\b/i.test(t)) return 'error: ' + t;
        return /\bready\b/i.test(t) && !/not ready/i.test(t) ? 'ready' : false;
      },
      null,
      { timeout: T.modelLoad, polling: 250 },
    ).catch(async (e) => {
      throw new StepError(`model not ready after ${secs(T.modelLoad)}: status is ` +
        JSON.stringify(await page.locator('[data-testid=model-status]').first().textContent({ timeout: 1000 }).catch(() => null)) +
        ` (${e.message.split('\n')[0]})`);
    });
    const state = await handle.jsonValue();
    check(state === 'ready', `model status shows an error: ${state}`);
  }

  // Waits until no save is under way ([data-testid=saving] gone): the page asks before a reload
  // while it saves, which Playwright would answer "stay".
  async function waitSaved() {
    await page.waitForSelector('[data-testid=saving]', { state: 'detached', timeout: T.ui })
      .catch(() => { throw new StepError('the page is still saving after ' + secs(T.ui)); });
  }

  async function addTask(name) {
    await page.fill('#new-task-name', name, { timeout: T.ui });
    await page.click('#add-task', { timeout: T.ui });
    await page.waitForSelector(q(name), { state: 'attached', timeout: T.ui })
      .catch(() => { throw new StepError(`${q(name)} did not appear after clicking #add-task`); });
  }

  // The main path (create, upload, train, fuse, type, evaluate, download) is walked by keyboard
  // alone: Tab to the control (tabTo fails if it is not reachable or shows no focus), then Enter,
  // Space or typing. The other steps use the mouse.
  const kbd = {
    async press(selector, key = 'Enter') {
      await tabTo(page, selector).catch((e) => { throw new StepError(`keyboard: ${e.message}`); });
      await page.keyboard.press(key);
    },
    async type(selector, value) {
      await tabTo(page, selector).catch((e) => { throw new StepError(`keyboard: ${e.message}`); });
      await page.keyboard.press('ControlOrMeta+A');
      await page.keyboard.type(value);
    },
  };
  async function addTaskByKeyboard(name) {
    await kbd.type('#new-task-name', name);
    await page.keyboard.press('Enter');
    await page.waitForSelector(q(name), { state: 'attached', timeout: T.ui })
      .catch(() => { throw new StepError(`${q(name)} did not appear after pressing Enter in #new-task-name`); });
  }

  // axe-core on the page as it is: fails on serious or critical violations, lists the others.
  async function axeCheck(state) {
    const { failing, other } = await runAxe(page);
    if (other.length) console.log(`     axe (${state}), minor/moderate:\n${describeViolations(other)}`);
    check(failing.length === 0, `axe-core (${state}): serious or critical violations:\n${describeViolations(failing)}`);
    console.log(`     axe (${state}): no serious or critical violations`);
  }

  // Watches (inside the page, so a short-lived element is not missed) whether `selector` ever exists.
  async function watchFor(key, selector) {
    await page.evaluate(([key, selector]) => {
      window.__e2eSeen ??= {};
      window.__e2eSeen[key] = !!document.querySelector(selector);
      const obs = new MutationObserver(() => {
        if (document.querySelector(selector)) { window.__e2eSeen[key] = true; obs.disconnect(); }
      });
      obs.observe(document, { subtree: true, childList: true, attributes: true });
    }, [key, selector]);
  }

  // Waits for `selector` to have data-trained="true", checking every second that the page answers.
  async function waitTrained(selector, progressSel, what) {
    const t0 = Date.now();
    let lastReport = t0, maxLatency = 0;
    for (;;) {
      const p0 = Date.now();
      const r = await Promise.race([page.evaluate(() => 1 + 1), sleep(T.responsive).then(() => 'timeout')]);
      const latency = Date.now() - p0;
      maxLatency = Math.max(maxLatency, latency);
      check(r === 2, `${what}: the page did not answer page.evaluate within ${T.responsive} ms (main thread blocked?)`);
      const trained = await page.getAttribute(selector, 'data-trained', { timeout: T.ui });
      if (trained === 'true') break;
      if (Date.now() - t0 > T.training) {
        const body = await page.locator(selector).first().innerText().catch(() => '');
        const messages = await page.locator('.messages').first().innerText().catch(() => '');
        throw new StepError(`${what}: ${selector} not data-trained="true" after ${secs(T.training)} ` +
          `(data-trained=${JSON.stringify(trained)}); it shows: ${body.slice(0, 600)}; messages: ${messages.slice(0, 800)}`);
      }
      if (Date.now() - lastReport > 15_000) {
        lastReport = Date.now();
        const prog = progressSel
          ? await page.locator(progressSel).first().textContent({ timeout: 1000 }).catch(() => null) : null;
        console.log(`     ${what}: ${secs(Date.now() - t0)}${prog ? ', progress: ' + prog.trim().slice(0, 120) : ''}`);
      }
      await sleep(1000);
    }
    console.log(`     ${what}: done in ${secs(Date.now() - t0)}, slowest page.evaluate ${maxLatency} ms`);
  }

  let failed = null;
  try {
    // a. open the page; [data-testid=model-status] says "ready"; [data-testid=backend] names the backend
    await step('open', async () => {
      await page.goto(origin + '/', { waitUntil: 'domcontentloaded', timeout: T.modelLoad });
      await waitModelReady();
      const backend = await text('[data-testid=backend]');
      console.log(`     backend: ${backend}`);
      // Isolated, on the CPU backend: the threaded engine with one thread per core chromium reports.
      const cores = await page.evaluate(() => navigator.hardwareConcurrency);
      const want = `CPU (WebAssembly, ${cores === 1 ? '1 thread' : `${cores} threads`})`;
      if (backend.trim() !== want) throw new StepError(`backend ${JSON.stringify(backend)}, expected ${JSON.stringify(want)}`);
      await axeCheck('empty');
    });

    // b. #new-task-name + #add-task create section[data-task=NAME]
    await step('create-tasks', async () => {
      for (const t of TASKS) await addTaskByKeyboard(t.name);
    });

    // c. input[data-testid=train-file] in the section; [data-testid=class-counts] names every class
    await step('upload', async () => {
      for (const t of TASKS) {
        await chooseFileByKeyboard(page, `${q(t.name)} input[data-testid=train-file]`, path.join(FIXTURES, t.file), T.ui)
          .catch((e) => { throw new StepError(`keyboard upload: ${e.message}`); });
        const sel = `${q(t.name)} [data-testid=class-counts]`;
        await page.waitForFunction(
          ([sel, classes]) => {
            const txt = (el) => { if (!el) return ''; const w = document.createTreeWalker(el, NodeFilter.SHOW_TEXT); let s = '', n; while ((n = w.nextNode())) s += n.nodeValue + ' '; return s; };
            const s = txt(document.querySelector(sel));
            return classes.every((c) => new RegExp(`\\b${c}\\b`, 'i').test(s));
          },
          [sel, t.classes],
          { timeout: T.ui, polling: 250 },
        ).catch(async () => {
          throw new StepError(`${sel} does not list ${t.classes.join(', ')}; it shows ` +
            JSON.stringify(await page.locator(sel).first().textContent({ timeout: 1000 }).catch(() => null)));
        });
        console.log(`     ${t.name}: ${(await text(sel)).replace(/\s+/g, ' ')}`);
      }
    });

    // d. input[name=epochs] = 2, input[name=min_steps] = 0, select[name=objective] = classify;
    //    [data-testid=train]; [data-testid=progress] shows; data-trained="true"
    for (const t of TASKS) {
      await step(`train-${t.name}`, async () => {
        for (const u of TASKS) {
          const sel = `${q(u.name)} input[name=epochs]`;
          await kbd.type(sel, '2');
          await page.keyboard.press('Tab'); // leaving the field commits it (change)
          const v = await page.locator(sel).inputValue({ timeout: T.ui });
          check(v === '2', `${u.name}: input[name=epochs] did not take the value 2 (${v})`);
          // Exactly 2 epochs of classification (no step minimum, no contrastive stage), so the
          // epoch-by-epoch steps below (checkpoint, partial adapter) see whole epochs.
          // Each change is sent with the task's settings as the page last heard them: let the
          // worker's answer arrive before the next change.
          await page.waitForTimeout(250);
          const minSel = `${q(u.name)} input[name=min_steps]`;
          await page.fill(minSel, '0', { timeout: T.ui });
          await page.locator(minSel).dispatchEvent('change');
          await page.waitForTimeout(250);
          await page.selectOption(`${q(u.name)} select[name=objective]`, 'classify', { timeout: T.ui });
          await page.waitForTimeout(250);
          check(await page.locator(sel).inputValue({ timeout: T.ui }) === '2', `${u.name}: epochs changed back`);
          check(await page.locator(minSel).inputValue({ timeout: T.ui }) === '0', `${u.name}: input[name=min_steps] did not take 0`);
        }
        const progressSel = `${q(t.name)} [data-testid=progress]`;
        await watchFor(`progress-${t.name}`, progressSel);
        await kbd.press(`${q(t.name)} [data-testid=train]`);
        if (t === TASKS[0]) {
          // axe-core while a job runs (progress bar, disabled controls, the loss chart)
          await page.waitForSelector(progressSel, { timeout: T.ui });
          await axeCheck('training');
        }
        await waitTrained(q(t.name), progressSel, `training ${t.name}`);
        const seen = await page.evaluate((k) => window.__e2eSeen?.[k], `progress-${t.name}`);
        check(seen, `${progressSel} never appeared during training`);
        // Screen readers heard the epochs start (a polite live region).
        const said = await text('[data-testid=announcer]');
        check(/epoch \d+ started/.test(said), `[data-testid=announcer] did not announce an epoch: ${JSON.stringify(said)}`);
      });
    }

    // e. [data-testid=fusion-cv] is ticked by default for these small tasks (each task's epoch and
    //    gate by 3-fold cross-validation); #train-fusion; #fusion gets data-trained="true"
    await step('fusion', async () => {
      check(await page.isChecked('[data-testid=fusion-cv]'), 'cross-validation is not on by default for 40-row tasks');
      await kbd.press('#train-fusion');
      await waitTrained('#fusion', '#fusion [data-testid=progress]', 'fusion training');
      const status = await text('[data-testid=fusion-status]');
      check(/one fusion per task/.test(status), `fusion status after the default run: ${status}`);
      // Each task says which prediction it answers with, and the cross-validated check behind it.
      for (const t of TASKS) {
        const note = await text(`${q(t.name)} [data-testid=fusion-note]`);
        check(
          /answers with (the hybrid|its own LoRA|the frozen model with a fresh head|the other task's adapter with a fresh head).*training examples, cross-validated over 3 folds/.test(note),
          `${t.name}: fusion note ${note}`,
        );
        console.log(`     ${t.name}: ${note}`);
      }
      // The user can force either: the choice is kept and said.
      await page.selectOption(`${q(TASKS[0].name)} select[name=answer]`, 'lora', { timeout: T.ui });
      await page.waitForFunction(
        (sel) => /always answer with the own LoRA/.test(document.querySelector(sel)?.textContent ?? ''),
        `${q(TASKS[0].name)} [data-testid=fusion-note]`,
        { timeout: T.ui, polling: 250 },
      ).catch(async () => {
        throw new StepError(`forcing LoRA: the note shows ${await text(`${q(TASKS[0].name)} [data-testid=fusion-note]`)}`);
      });
      await page.selectOption(`${q(TASKS[0].name)} select[name=answer]`, 'automatic', { timeout: T.ui });
      await axeCheck('fused');
    });

    // e1b. #evaluate with the per-task fusion; [data-testid=report] has rows for both tasks and
    //      frozen/lora/hybrid: the 40-row tasks hold nothing out, so every candidate is scored on
    //      its 40 training examples by the models of the cross-validated check
    await step('evaluate', async () => {
      await kbd.press('#evaluate');
      const words = [...TASKS.map((t) => t.name), 'frozen', 'lora', 'hybrid'];
      await page.waitForFunction(
        (words) => {
          const r = document.querySelector('[data-testid=report]');
          if (!r) return false;
          const s = r.textContent.toLowerCase();
          return words.every((w) => s.includes(w));
        },
        words,
        { timeout: T.evaluate, polling: 500 },
      ).catch(async () => {
        const shown = await page.locator('[data-testid=report]').first().innerText({ timeout: 1000 }).catch(() => '(no [data-testid=report])');
        throw new StepError(`the report does not name ${words.join(', ')}; it shows: ${shown.slice(0, 800)}`);
      });
      const rows = page.locator('[data-testid=report] tr');
      for (const t of TASKS) {
        const n = await rows.filter({ hasText: t.name }).count();
        check(n > 0, `[data-testid=report] has no table row (tr) naming ${t.name}`);
      }
      // Accuracy with its 95 % interval, and the hybrid against LoRA in words (exact McNemar).
      const table = await text('[data-testid=report]');
      check(/\d+\.\d % \(\d+\.\d–\d+\.\d\)/.test(table), `the report shows no accuracy interval: ${table.slice(0, 300)}`);
      const findings = await page.locator('[data-testid=findings]').allInnerTexts();
      for (const t of TASKS) {
        check(findings.some((f) => /hybrid .* vs lora .* on the same \d+ examples: .*McNemar.*p [=<] /.test(f)),
          `no McNemar sentence for ${t.name}: ${findings.join(' | ').slice(0, 400)}`);
      }
      console.log('     ' + (await page.locator('[data-testid=report]').first().innerText()).replace(/\n/g, '\n     '));
      console.log('     ' + findings.join('\n     '));
      const said = await text('[data-testid=announcer]');
      check(/Evaluation done/.test(said), `[data-testid=announcer] did not announce the report: ${JSON.stringify(said)}`);
      await axeCheck('report');
    });

    // e2. the shared option: tick [data-testid=fusion-shared], train again; the status says so
    await step('fusion-shared', async () => {
      await kbd.press('[data-testid=fusion-shared]', 'Space');
      check(await page.isChecked('[data-testid=fusion-shared]'), 'Space did not tick [data-testid=fusion-shared]');
      check(await page.isDisabled('[data-testid=fusion-cv]'), 'cross-validation is offered for a shared fusion');
      await kbd.press('#train-fusion');
      await page.waitForFunction(
        () => /one shared fusion/.test(document.querySelector('[data-testid=fusion-status]')?.textContent ?? ''),
        null,
        { timeout: T.training, polling: 500 },
      ).catch(async () => {
        throw new StepError(`after a shared fusion run the status shows: ${await text('[data-testid=fusion-status]')}`);
      });
      console.log(`     ${await text('[data-testid=fusion-status]')}`);
    });

    // f. #live-text; [data-testid=live-results] [data-testid=prediction][data-task=NAME] with
    //    [data-testid=attention-bar] inside
    await step('live', async () => {
      await kbd.type('#live-text', LIVE_TEXT);
      const sels = TASKS.map((t) => `[data-testid=live-results] [data-testid=prediction][data-task="${t.name}"]`);
      await page.waitForFunction(
        (sels) => sels.every((s) => document.querySelector(s)?.querySelector('[data-testid=attention-bar]')),
        sels,
        { timeout: T.live, polling: 250 },
      ).catch(async () => {
        const shown = await page.locator('[data-testid=live-results]').first().innerHTML({ timeout: 1000 }).catch(() => '(no [data-testid=live-results])');
        throw new StepError(`no prediction with an attention bar for every task; live results: ${shown.slice(0, 800)}`);
      });
      // Calibrated probabilities: no hybrid prediction claims 100 % unless it is exactly 1
      // (values that would round to 100.0 show as "> 99.9 %").
      for (const s of sels) {
        const shown = await text(s);
        check(!shown.includes('100.0 %'), `${s} shows a probability of 100.0 %: ${shown.slice(0, 200)}`);
      }
      for (const s of sels) {
        const answers = await page.locator(`${s} [data-testid=answer-badge]`).count();
        check(answers === 1, `${s} marks ${answers} predictions as the answer (expected 1)`);
      }
      for (const s of sels) {
        const bars = await page.locator(`${s} [data-testid=attention-bar]`).count();
        console.log(`     ${s.match(/data-task="(.*)"/)[1]}: ${(await text(s)).replace(/\s+/g, ' ').slice(0, 160)} (${bars} attention bars)`);
      }
      // The same answers, in words, in a live region for screen readers.
      const spoken = await text('[data-testid=live-summary]');
      for (const t of TASKS) {
        check(new RegExp(`${t.name}: \\S+, [<>\\d. ]+%`).test(spoken), `[data-testid=live-summary] has no answer for ${t.name}: ${JSON.stringify(spoken)}`);
      }
      console.log(`     read out: ${spoken}`);

      // One text per line: each non-blank line predicted (together), one table row each with
      // every task's answer.
      await page.check('#live-per-line', { timeout: T.ui });
      const lines = ['a wonderful, moving film', '', 'the plot is thin and the acting is wooden', 'please book a taxi'];
      await page.fill('#live-text', lines.join('\n'), { timeout: T.ui });
      await page.waitForFunction(
        (n) => document.querySelectorAll('[data-testid=batch-results] [data-testid=batch-row]').length === n,
        3,
        { timeout: T.live, polling: 250 },
      ).catch(async () => {
        const shown = await page.locator('[data-testid=live-results]').first().innerText({ timeout: 1000 }).catch(() => '');
        throw new StepError(`one text per line: no table of 3 rows; live results: ${shown.slice(0, 600)}`);
      });
      const cells = await page.locator('[data-testid=batch-row]').first().locator('td').count();
      check(cells === TASKS.length, `a batch row has ${cells} answers (expected ${TASKS.length})`);
      console.log(`     one text per line: ${(await text('[data-testid=live-results] .hint'))}`);
      await page.fill('#live-text', LIVE_TEXT, { timeout: T.ui });
      await page.uncheck('#live-per-line', { timeout: T.ui });
    });

    // h. [data-testid=download-adapter] in the sentiment section downloads a PEFT adapter zip
    await step('download', async () => {
      const [download] = await Promise.all([
        page.waitForEvent('download', { timeout: T.ui * 2 }),
        kbd.press(`${q('sentiment')} [data-testid=download-adapter]`),
      ]);
      const zipPath = path.join(ARTIFACTS, 'sentiment-adapter.zip');
      await download.saveAs(zipPath);
      const entries = readZip(fs.readFileSync(zipPath));
      const names = [...entries.keys()];
      console.log(`     ${download.suggestedFilename()}: ${names.join(', ')}`);
      const find = (base) => names.find((n) => n === base || n.endsWith('/' + base));
      const cfgName = find('adapter_config.json'), stName = find('adapter_model.safetensors');
      check(cfgName, 'the zip has no adapter_config.json');
      check(stName, 'the zip has no adapter_model.safetensors');
      const cfg = JSON.parse(entries.get(cfgName).toString('utf8'));
      check(cfg.peft_type === 'LORA', `adapter_config.json: peft_type is ${JSON.stringify(cfg.peft_type)}, not "LORA"`);
      const { tensors } = readSafetensorsHeader(entries.get(stName));
      check(tensors.length > 0, 'adapter_model.safetensors holds no tensors');
      const bad = tensors.filter((t) => !PEFT_KEY.test(t.name)).map((t) => t.name);
      check(bad.length === 0, `adapter_model.safetensors keys not in PEFT's naming: ${bad.join(', ')}`);
      const a = tensors.filter((t) => t.name.endsWith('lora_A.weight')).length;
      const b = tensors.filter((t) => t.name.endsWith('lora_B.weight')).length;
      check(a === b && a > 0, `lora_A/lora_B tensors unpaired: ${a} A, ${b} B`);
      if (Number.isInteger(cfg.r)) {
        const rank = (t) => (t.name.endsWith('lora_A.weight') ? t.shape[0] : t.shape[1]); // A [r,in], B [out,r]
        const wrong = tensors.filter((t) => t.shape.length !== 2 || rank(t) !== cfg.r);
        check(wrong.length === 0, `tensor shapes do not match r=${cfg.r}: ${wrong.map((t) => `${t.name} ${JSON.stringify(t.shape)}`).join(', ')}`);
      }
      // The model card: base model, labels and the Python recipe.
      const cardName = find('README.md');
      check(cardName, 'the zip has no README.md model card');
      const card = entries.get(cardName).toString('utf8');
      for (const want of ['base_model: "sentence-transformers/all-MiniLM-L6-v2"', '`negative`, `positive`', 'PeftModel.from_pretrained']) {
        check(card.includes(want), `README.md model card lacks ${want}`);
      }
      console.log(`     peft_type LORA, r=${cfg.r}, lora_alpha=${cfg.lora_alpha}, target_modules=${JSON.stringify(cfg.target_modules)}, ${tensors.length} tensors`);
    });

    // i. reload: the model is ready again, both tasks and the fusion come back trained
    await step('reload', async () => {
      await waitSaved();
      await page.reload({ waitUntil: 'domcontentloaded', timeout: T.modelLoad });
      await waitModelReady();
      for (const sel of [...TASKS.map((t) => `${q(t.name)}[data-trained="true"]`), '#fusion[data-trained="true"]']) {
        await page.waitForSelector(sel, { state: 'attached', timeout: T.restore })
          .catch(() => { throw new StepError(`after the reload, ${sel} is missing`); });
      }
      const status = await text('[data-testid=fusion-status]');
      check(/one shared fusion/.test(status), `after the reload the fusion status shows: ${status}`);
      // The "Model ready" line says where the load's seconds went (page, engine, model, workspace).
      const phases = (await page.getAttribute('[data-testid=model-status]', 'data-phases')) ?? '';
      for (const p of ['page: UI wasm', 'engine wasm', 'model files', 'weights to tensors', 'workspace restore']) {
        check(phases.includes(p), `the load breakdown has no "${p}": ${phases}`);
      }
      console.log(`     ${phases.slice(0, 150)}…`);
    });

    // i2. offline: once [data-testid=offline] says "Works offline" (the service worker keeps the
    //     page's files; the engine keeps the model), a reload with the network cut reaches "ready",
    //     restores the trained workspace and predicts live. The network is cut twice over: the
    //     browser is offline (Playwright) and the server drops every connection (the browser's own
    //     check for a new service worker is not covered by Playwright's offline mode).
    await step('offline', async () => {
      await page.waitForSelector('[data-testid=offline][data-state=ready]', { timeout: T.modelLoad })
        .catch(async () => { throw new StepError(`offline use not ready: ${await text('[data-testid=offline]')}`); });
      await page.waitForFunction(() => !!navigator.serviceWorker.controller, null, { timeout: T.ui })
        .catch(() => { throw new StepError('no service worker controls the page'); });
      // The service worker keeps the engine the page runs (the threaded one here), not the other.
      const kept = await page.evaluate(async () => {
        const name = (await caches.keys()).find((k) => k.startsWith('lorafuse-shell-'));
        const keys = name ? (await (await caches.open(name)).keys()).map((r) => new URL(r.url).pathname) : [];
        return { threads: keys.includes('/threads/engine_bg.wasm'), single: keys.includes('/worker_bg.wasm') };
      });
      check(kept.threads && !kept.single, `engines kept for offline use: ${JSON.stringify(kept)} (expected the threaded one only)`);
      const manifest = await page.evaluate(async () => {
        const href = document.querySelector('link[rel=manifest]')?.href;
        return href ? (await fetch(href)).json() : null;
      });
      check(manifest?.icons?.some((i) => i.sizes === '512x512'), `web app manifest: ${JSON.stringify(manifest)}`);
      await waitSaved();
      const served = serverLog.length;
      setServerDown(true);
      await context.setOffline(true);
      try {
        await page.reload({ waitUntil: 'domcontentloaded', timeout: T.modelLoad });
        check(await page.evaluate(() => navigator.onLine === false), 'the browser does not think it is offline');
        await waitModelReady();
        for (const sel of [...TASKS.map((t) => `${q(t.name)}[data-trained="true"]`), '#fusion[data-trained="true"]']) {
          await page.waitForSelector(sel, { state: 'attached', timeout: T.restore })
            .catch(() => { throw new StepError(`offline reload: ${sel} is missing`); });
        }
        await page.fill('#live-text', LIVE_TEXT, { timeout: T.ui });
        const sel = `[data-testid=live-results] [data-testid=prediction][data-task="${TASKS[0].name}"]`;
        await page.waitForSelector(sel, { timeout: T.live })
          .catch(() => { throw new StepError('offline: no live prediction'); });
        const answered = serverLog.slice(served).filter((r) => r.status !== 0).map((r) => r.path);
        check(answered.length === 0, `offline, yet the server answered ${answered.join(', ')}`);
        const tried = serverLog.slice(served).map((r) => r.path);
        console.log(`     offline reload: ready, ${TASKS.length} tasks restored, live: ${(await text('[data-testid=live-summary]')).slice(0, 120)}`);
        console.log(`     requests that met no network: ${tried.length ? tried.join(', ') : 'none'}`);
      } finally {
        await context.setOffline(false);
        setServerDown(false);
      }
      await page.fill('#live-text', '', { timeout: T.ui });
    });

    // j. a malformed upload in a third task: [data-testid=rejected] lists each bad row with its line
    await step('malformed-upload', async () => {
      await addTask('broken');
      await page.setInputFiles(`${q('broken')} input[data-testid=train-file]`, path.join(FIXTURES, 'e2e_malformed.csv'), { timeout: T.ui });
      const sel = `${q('broken')} [data-testid=rejected]`;
      await page.waitForFunction(
        ([sel, lines]) => {
          const txt = (el) => { if (!el) return ''; const w = document.createTreeWalker(el, NodeFilter.SHOW_TEXT); let s = '', n; while ((n = w.nextNode())) s += n.nodeValue + ' '; return s; };
          const s = txt(document.querySelector(sel));
          return (s.match(/\bline\b/gi) ?? []).length >= lines.length &&
            lines.every((n) => new RegExp(`\\bline\\D{0,3}${n}\\b`, 'i').test(s));
        },
        [sel, MALFORMED_LINES],
        { timeout: T.ui, polling: 250 },
      ).catch(async () => {
        const shown = await page.locator(sel).first().innerText({ timeout: 1000 }).catch(() => `(no ${sel})`);
        throw new StepError(`${sel} does not list lines ${MALFORMED_LINES.join(', ')} (each as "line N"); it shows: ${shown.slice(0, 800)}`);
      });
      console.log('     ' + (await page.locator(sel).first().innerText()).replace(/\n/g, '\n     '));
    });

    // j1. uploads as spreadsheet programs write them: Excel's CSV (BOM, `;`, CRLF, a quoted line
    //     break) is read, and [data-testid=read-as] says how; a label holding HTML is shown as text,
    //     never run; an .xlsx given as .csv is refused by name in [data-testid=error]
    await step('excel-uploads', async () => {
      await page.setInputFiles(`${q('broken')} input[data-testid=train-file]`, path.join(FIXTURES, 'e2e_excel_semicolon.csv'), { timeout: T.ui });
      const readAs = `${q('broken')} [data-testid=read-as]`;
      await page.waitForFunction(
        (sel) => /';'-separated, UTF-8 with BOM, header row/.test(document.querySelector(sel)?.textContent ?? ''),
        readAs,
        { timeout: T.ui, polling: 250 },
      ).catch(async () => {
        throw new StepError(`${readAs} does not say ';'-separated UTF-8 with BOM: ${await text(readAs).catch(() => '(missing)')}`);
      });
      const counts = await text(`${q('broken')} [data-testid=class-counts]`);
      check(/positiv/.test(counts) && /negativ/.test(counts), `class counts of the Excel file: ${counts}`);
      check(counts.includes('<img src=x onerror="window.__xss=1">'), `the HTML label is not shown as text: ${counts}`);
      const injected = await page.evaluate((sel) => ({
        xss: window.__xss ?? null,
        imgs: document.querySelectorAll(`${sel} img`).length,
      }), q('broken'));
      check(injected.xss === null && injected.imgs === 0, `the HTML label was rendered as HTML: ${JSON.stringify(injected)}`);
      console.log(`     ${await text(readAs)}; classes: ${counts.replace(/\s+/g, ' ')}`);
      // A workbook saved as .csv: refused, named.
      const xlsx = Buffer.concat([Buffer.from('PK\x03\x04\x14\x00\x06\x00', 'latin1'), Buffer.from('[Content_Types].xml xl/workbook.xml')]);
      await page.setInputFiles(`${q('broken')} input[data-testid=train-file]`, { name: 'sales.csv', mimeType: 'text/csv', buffer: xlsx }, { timeout: T.ui });
      await page.waitForFunction(
        () => [...document.querySelectorAll('[data-testid=error]')].some((e) => /Excel workbook/.test(e.textContent)),
        null,
        { timeout: T.ui, polling: 250 },
      ).catch(async () => {
        throw new StepError(`no error naming the Excel workbook: ${(await page.locator('[data-testid=error]').allInnerTexts()).join(' | ')}`);
      });
      // The refused file changed nothing: the Excel rows are still the task's data.
      const after = await text(`${q('broken')} [data-testid=class-counts]`);
      check(after === counts, `the refused upload changed the task's data: ${after}`);
    });

    // j2. a narrow window (a phone): nothing wider than the window, the controls still there
    await step('narrow-window', async () => {
      await page.setViewportSize({ width: 390, height: 800 });
      await page.waitForTimeout(300);
      const { scroll, inner } = await page.evaluate(() => ({
        scroll: document.documentElement.scrollWidth,
        inner: window.innerWidth,
      }));
      console.log(`     page width ${scroll} px in a ${inner} px window`);
      check(scroll <= inner + 1, `the page is ${scroll} px wide in a ${inner} px window`);
      check(await page.isVisible('#live-text'), '#live-text is not visible in a narrow window');
      await page.setViewportSize({ width: 1280, height: 800 });
    });

    // k. no request left the page's own origin
    await step('network', async () => {
      const foreign = requests.filter((u) => !/^(data|blob):/.test(u) && new URL(u).origin !== origin);
      console.log(`     ${requests.length} requests, ${foreign.length} to other origins`);
      // The reload read the model from Cache Storage, not from the server.
      const weights = serverLog.filter((r) => r.path.endsWith(`/${WEIGHTS}`));
      console.log(`     ${WEIGHTS} served ${weights.length} time(s) over two visits`);
      check(weights.length === 1, `${WEIGHTS} was fetched ${weights.length} times; the second visit should read it from the browser's cache`);
      // Only the F16 weights (45 MB) travel; the F32 file (91 MB) is not even in the build.
      const f32 = serverLog.filter((r) => r.path.endsWith('/model.safetensors'));
      check(f32.length === 0, `the page asked for the F32 model.safetensors ${f32.length} time(s)`);
      if (process.env.LORAFUSE_E2E_VERBOSE === '1') for (const u of requests) console.log(`       ${u.slice(0, 150)}`);
      check(foreign.length === 0, `requests to other origins:\n  ${[...new Set(foreign)].join('\n  ')}`);
      check(pageErrors.length === 0, `uncaught page errors:\n  ${pageErrors.join('\n  ')}`);
      const unexpected = consoleErrors.filter((l) => !CONSOLE_ERROR_ALLOW.some((re) => re.test(l)));
      check(unexpected.length === 0, `console errors in the page or a worker:\n  ${unexpected.join('\n  ')}`);
    });

    // k1. the page carries a Content-Security-Policy (scripts/csp.py) and broke none of it
    await step('csp', async () => {
      const csp = await page.evaluate(() =>
        document.querySelector('meta[http-equiv="Content-Security-Policy"]')?.getAttribute('content') ?? null);
      check(csp && /script-src 'self' 'wasm-unsafe-eval' 'sha256-/.test(csp) && /connect-src 'self'/.test(csp),
        `no Content-Security-Policy meta tag with script-src and connect-src: ${csp}`);
      const violations = await page.evaluate(() => window.__csp ?? ['(the listener is missing)']);
      check(violations.length === 0, `Content-Security-Policy violations:\n  ${violations.join('\n  ')}`);
      console.log(`     ${csp.slice(0, 120)}…; 0 violations`);
    });

    // k1b. the browser's storage is full: the failed save is reported, the work stays in the tab
    await step('storage-full', async () => {
      await page.evaluate(() => {
        window.__put = IDBObjectStore.prototype.put;
        IDBObjectStore.prototype.put = function () {
          throw new DOMException('The quota has been exceeded.', 'QuotaExceededError');
        };
      });
      try {
        await addTask('quota');
        await page.waitForFunction(
          () => [...document.querySelectorAll('[data-testid=error]')].some((e) => /storage for the page is full/.test(e.textContent)),
          null,
          { timeout: T.ui, polling: 250 },
        ).catch(async () => {
          throw new StepError(`no error about full storage: ${(await page.locator('[data-testid=error]').allInnerTexts()).join(' | ')}`);
        });
      } finally {
        await page.evaluate(() => { IDBObjectStore.prototype.put = window.__put; });
      }
      check(await page.locator(q('quota')).count() === 1, 'the task added while storage was full is gone from the tab');
      // With space again, the next change saves: delete the task, reload, it stays deleted.
      await page.click(`${q('quota')} button.remove`, { timeout: T.ui });
      await page.waitForSelector(q('quota'), { state: 'detached', timeout: T.ui });
      console.log(`     ${(await page.locator('[data-testid=error]').last().innerText()).slice(0, 140)}…`);
    });

    // k2. a second tab on the same workspace: [data-testid=read-only] says it only shows it, its
    //     controls are off, the first tab is unaffected
    await step('two-tabs', async () => {
      const tab2 = await context.newPage();
      tab2.on('console', (msg) => onConsole(msg.worker?.() ? 'worker (tab 2)' : 'page (tab 2)')(msg));
      try {
        await tab2.goto(origin + '/', { waitUntil: 'domcontentloaded', timeout: T.modelLoad });
        await tab2.waitForSelector('[data-testid=read-only]', { timeout: T.modelLoad })
          .catch(() => { throw new StepError('the second tab does not say it is read-only'); });
        await tab2.waitForSelector(`${q('sentiment')}[data-trained="true"]`, { state: 'attached', timeout: T.modelLoad })
          .catch(() => { throw new StepError('the second tab does not show the saved workspace'); });
        check(await tab2.isDisabled('#add-task'), 'the read-only tab lets the user add a task');
        check(await tab2.isDisabled(`${q('sentiment')} [data-testid=train]`), 'the read-only tab lets the user train');
        console.log(`     tab 2: ${(await tab2.locator('[data-testid=read-only]').innerText()).slice(0, 90)}…`);
      } finally {
        await tab2.close();
      }
      check(await page.locator('[data-testid=read-only]').count() === 0, 'the first tab became read-only');
      check(!(await page.isDisabled('#add-task')), 'the first tab cannot add tasks any more');
    });

    // l. a damaged model in Cache Storage: evicted, fetched again, checked, and the page is ready
    await step('damaged-cache', async () => {
      const before = serverLog.filter((r) => r.path.endsWith(`/${WEIGHTS}`)).length;
      const damaged = await page.evaluate(async (weights) => {
        const c = await caches.open('lorafuse-model-v1');
        const key = (await c.keys()).find((r) => r.url.endsWith(`/${weights}`));
        if (!key) return `no ${weights} in Cache Storage`;
        const buf = new Uint8Array(await (await c.match(key)).arrayBuffer());
        buf[buf.length - 1] ^= 0xff; // one flipped byte
        await c.put(key, new Response(buf));
        return buf.length;
      }, WEIGHTS);
      check(typeof damaged === 'number', String(damaged));
      await waitSaved();
      await page.reload({ waitUntil: 'domcontentloaded', timeout: T.modelLoad });
      await waitModelReady();
      const notices = (await page.locator('[data-testid=notice]').allInnerTexts()).join(' | ');
      check(/model\.f16\.safetensors .* was damaged .* removed and is downloaded again/.test(notices), `no notice of the damaged cache entry: ${notices}`);
      const after = serverLog.filter((r) => r.path.endsWith(`/${WEIGHTS}`)).length;
      check(after === before + 1, `${WEIGHTS} was fetched ${after - before} times after the damage (expected 1)`);
      const sha = await page.evaluate(async (weights) => {
        const c = await caches.open('lorafuse-model-v1');
        const key = (await c.keys()).find((r) => r.url.endsWith(`/${weights}`));
        const d = await crypto.subtle.digest('SHA-256', await (await c.match(key)).arrayBuffer());
        return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, '0')).join('');
      }, WEIGHTS);
      check(sha === MODEL_SHA256, `the cache holds ${WEIGHTS} with sha256 ${sha}`);
      for (const t of TASKS) {
        await page.waitForSelector(`${q(t.name)}[data-trained="true"]`, { state: 'attached', timeout: T.restore })
          .catch(() => { throw new StepError(`after the damaged-cache reload, ${t.name} is not trained`); });
      }
      console.log(`     ${notices}`);
    });

    // m. a reload in the middle of training keeps the uploaded data and the adapter of the
    //    completed epochs, and [data-testid=partial] says the run did not finish
    await step('reload-during-training', async () => {
      const t = TASKS[0];
      const epochs = page.locator(`${q(t.name)} input[name=epochs]`);
      await epochs.fill('6', { timeout: T.ui });
      await epochs.dispatchEvent('change');
      await page.click(`${q(t.name)} [data-testid=train]`, { timeout: T.ui });
      // The first epoch is complete (and its checkpoint saved) once the progress line is in epoch 2.
      await page.waitForFunction(
        (sel) => /· epoch [2-6] ·/.test(document.querySelector(sel)?.textContent ?? ''),
        `${q(t.name)} .progress-line`,
        { timeout: T.training, polling: 100 },
      ).catch(() => { throw new StepError('training did not reach epoch 2'); });
      await waitSaved();
      await page.reload({ waitUntil: 'domcontentloaded', timeout: T.modelLoad });
      await waitModelReady();
      await page.waitForSelector(`${q(t.name)}[data-trained="true"] [data-testid=partial]`, { timeout: T.restore })
        .catch(async () => {
          throw new StepError(`after a reload during training, ${t.name} shows no partial adapter: ` +
            (await page.locator(q(t.name)).first().innerText().catch(() => '')).slice(0, 400));
        });
      const partial = await text(`${q(t.name)} [data-testid=partial]`);
      check(/Trained [1-5] of 6 epochs/.test(partial), `partial note: ${partial}`);
      const counts = await text(`${q(t.name)} [data-testid=class-counts]`);
      check(t.classes.every((c) => counts.includes(c)), `the uploaded data is gone after the reload: ${counts}`);
      console.log(`     ${partial}`);
    });

    // m. bring your own encoder: a 3-layer copy of MiniLM with CLS pooling in F16
    //    (scripts/cut_encoder.py), picked as a folder in [data-testid=model-folder]. The engine
    //    restarts on it ([data-testid=model-name]); the old adapters are not loaded, the tasks'
    //    data stay; two tasks train, fuse and predict on it; a downloaded adapter records it; an
    //    adapter of the default model is refused; a reload comes back on it; then back to default.
    await step('own-encoder', async () => {
      const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'lorafuse-encoder-')), 'minilm3-cls');
      const made = execFileSync('python3', [path.join(ROOT, 'scripts', 'cut_encoder.py'),
        path.join(ROOT, 'public', 'models', 'all-MiniLM-L6-v2'), dir,
        '--layers', '3', '--pooling', 'cls', '--dtype', 'f16', '--no-normalize']).toString().trim();
      console.log(`     ${made}`);
      await waitSaved();
      page.once('dialog', (d) => d.accept());
      await page.click('.own-model summary', { timeout: T.ui });
      await page.setInputFiles('[data-testid=model-folder]', dir, { timeout: T.ui });
      await page.waitForFunction(
        () => /minilm3-cls \(\d+\.\d MB\)/.test(document.querySelector('[data-testid=model-name]')?.textContent ?? ''),
        null, { timeout: T.modelLoad, polling: 250 },
      ).catch(async () => { throw new StepError(`the page did not switch to the picked encoder: ${await text('[data-testid=model-name]')} / ${await text('[data-testid=model-status]')} / ${(await page.locator('[data-testid=error]').allInnerTexts()).join(' | ')}`); });
      await waitModelReady();
      console.log(`     running on ${await text('[data-testid=model-name]')}`);
      for (const t of TASKS) {
        const counts = await text(`${q(t.name)} [data-testid=class-counts]`);
        check(t.classes.every((c) => counts.includes(c)), `${t.name}: data gone after switching encoders: ${counts}`);
        const epochs = page.locator(`${q(t.name)} input[name=epochs]`);
        await epochs.fill('1', { timeout: T.ui });
        await epochs.dispatchEvent('change');
        await page.click(`${q(t.name)} [data-testid=train]`, { timeout: T.ui });
        await waitTrained(q(t.name), `${q(t.name)} .progress-line`, `training ${t.name} on the picked encoder`);
      }
      // The fusion goes over every task: the untrained one of the malformed-upload step blocks it,
      // and the panel says so, until it is deleted.
      check(await page.isDisabled('#train-fusion'), '#train-fusion is enabled with an untrained task');
      const blocked = await text('[data-testid=fusion-status]');
      check(/train or delete "broken"/.test(blocked), `the fusion panel does not name the untrained task: ${blocked}`);
      await page.click(`${q('broken')} button.remove`, { timeout: T.ui });
      await page.waitForSelector(q('broken'), { state: 'detached', timeout: T.ui });
      await page.click('#train-fusion', { timeout: T.ui });
      await waitTrained('#fusion', '#fusion .progress-line', 'fusion on the picked encoder');
      await page.fill('#live-text', LIVE_TEXT, { timeout: T.ui });
      const sel = `[data-testid=live-results] [data-testid=prediction][data-task="${TASKS[0].name}"] [data-testid=attention-bar]`;
      await page.waitForSelector(sel, { timeout: T.live })
        .catch(() => { throw new StepError('no fused live prediction on the picked encoder'); });
      console.log(`     live: ${await text('[data-testid=live-summary]')}`);
      // The adapter records its encoder.
      const [download] = await Promise.all([
        page.waitForEvent('download', { timeout: T.ui * 2 }),
        page.click(`${q(TASKS[0].name)} [data-testid=download-adapter]`, { timeout: T.ui }),
      ]);
      const zip = path.join(ARTIFACTS, 'own-encoder-adapter.zip');
      await download.saveAs(zip);
      const entries = readZip(fs.readFileSync(zip));
      const metaName = [...entries.keys()].find((n) => n.endsWith('lorafuse_task.json'));
      const meta = JSON.parse(entries.get(metaName).toString('utf8'));
      check(meta.base_model === 'minilm3-cls', `lorafuse_task.json base_model is ${meta.base_model}`);
      // An adapter of the default model is refused, saying why.
      const before = await page.locator('[data-testid=error]').count();
      await page.setInputFiles('#import-file', path.join(ARTIFACTS, 'sentiment-adapter.zip'), { timeout: T.ui });
      await page.waitForFunction(
        (n) => [...document.querySelectorAll('[data-testid=error]')].slice(n).some((e) => /trained on the base model/.test(e.textContent)),
        before, { timeout: T.ui, polling: 250 },
      ).catch(async () => { throw new StepError(`importing a default-model adapter was not refused: ${(await page.locator('[data-testid=error]').allInnerTexts()).join(' | ')}`); });
      console.log(`     refused: ${(await page.locator('[data-testid=error]').last().innerText()).slice(0, 160)}`);
      // A reload comes back on the picked encoder, trained.
      await waitSaved();
      await page.reload({ waitUntil: 'domcontentloaded', timeout: T.modelLoad });
      await waitModelReady();
      check(/minilm3-cls/.test(await text('[data-testid=model-name]')), 'after a reload the page is not on the picked encoder');
      await page.waitForSelector('#fusion[data-trained="true"]', { state: 'attached', timeout: T.restore })
        .catch(() => { throw new StepError('after a reload on the picked encoder, the fusion is gone'); });
      // Back to the default model.
      await page.click('.own-model summary', { timeout: T.ui });
      await page.click('[data-testid=default-model]', { timeout: T.ui });
      await page.waitForFunction(
        () => /all-MiniLM-L6-v2/.test(document.querySelector('[data-testid=model-name]')?.textContent ?? ''),
        null, { timeout: T.modelLoad, polling: 250 },
      ).catch(async () => { throw new StepError(`not back on the default model: ${await text('[data-testid=model-name]')}`); });
      console.log(`     back on ${await text('[data-testid=model-name]')}`);
    });
  } catch (err) {
    failed = err;
  }

  const missing = serverLog.filter((r) => r.status !== 200 && r.status !== 304 && r.status !== 0);
  if (missing.length) console.log(`server answered non-200 to:\n  ${missing.map((r) => `${r.status} ${r.path}`).join('\n  ')}`);
  if (consoleErrors.length) console.log(`console errors (${consoleErrors.length}):\n  ${consoleErrors.slice(0, 30).join('\n  ')}`);
  if (pageErrors.length) console.log(`page errors (${pageErrors.length}):\n  ${pageErrors.join('\n  ')}`);
  await close();
  server.close();

  if (failed) {
    console.log(`last console lines:\n  ${consoleLines.slice(-40).join('\n  ') || '(none)'}`);
    console.error(`\nFAILED at step ${failed.step ?? '(set-up)'}: ${failed instanceof StepError ? failed.message : failed.stack}`);
    console.error(`screenshots: ${ARTIFACTS}`);
    process.exit(1);
  }
  console.log(`\nbrowser end-to-end test passed in ${secs(Date.now() - started)} (screenshots: ${ARTIFACTS})`);
}

if (import.meta.url === pathToFileURL(path.resolve(process.argv[1] ?? '')).href) {
  main().catch((err) => {
    console.error(`FAILED: ${err.stack || err}`);
    process.exit(1);
  });
}
