// Measures a 100 MB upload in headless chromium (a benchmark, not a test: it asserts only that the
// upload arrives). Builds a CSV of about 100 MB from the SST-2 sample (rows repeated with a row
// number, two classes), uploads it into a new task, and prints: the time until the task shows its
// class counts, whether "Reading …: N %" progress appeared, the slowest answer of the page's main
// thread while the worker parsed (page.evaluate round trips every 100 ms), and the time until the
// workspace was saved (a reload then shows the rows).
//
//   node tests/e2e/big_upload.mjs [dist] [megabytes]        (default dist, 100)

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, launchBrowser } from './app.test.mjs';

const dist = path.resolve(process.argv[2] ?? 'dist');
const mb = Number(process.argv[3] ?? 100);
const HERE = path.dirname(new URL(import.meta.url).pathname);
const sample = fs.readFileSync(path.join(HERE, '../fixtures/data/sst2_train_600.csv'), 'utf8')
  .split('\n').slice(1).filter((l) => l.trim());

const file = path.join(os.tmpdir(), `lorafuse-big-${mb}mb.csv`);
if (!fs.existsSync(file) || fs.statSync(file).size < mb * 1e6) {
  const out = fs.openSync(file, 'w');
  fs.writeSync(out, 'text,label\n');
  let bytes = 0, i = 0;
  while (bytes < mb * 1e6) {
    const row = sample[i % sample.length];
    const comma = row.lastIndexOf(',');
    const line = `"${row.slice(0, comma).replace(/^"|"$/g, '').replace(/"/g, '""')} (${i})",${row.slice(comma + 1)}\n`;
    fs.writeSync(out, line);
    bytes += Buffer.byteLength(line);
    i += 1;
  }
  fs.closeSync(out);
}
const size = fs.statSync(file).size;
console.log(`file: ${file}, ${(size / 1e6).toFixed(1)} MB`);

const { server, origin } = await startServer(dist);
const { context, close } = await launchBrowser();
const page = context.pages()[0] ?? (await context.newPage());
const secs = (ms) => (ms / 1000).toFixed(1) + ' s';
try {
  await page.goto(origin + '/', { waitUntil: 'domcontentloaded' });
  await page.waitForFunction(() => /\bready\b/i.test(document.querySelector('[data-testid=model-status]')?.textContent ?? ''), null, { timeout: 120_000 });
  await page.fill('#new-task-name', 'big');
  await page.click('#add-task');
  await page.waitForSelector('section[data-task="big"]');
  const t0 = Date.now();
  let slowest = 0, sawProgress = false, done = false;
  const counts = 'section[data-task="big"] [data-testid=class-counts]';
  const watch = (async () => {
    while (!done) {
      const p0 = Date.now();
      const r = await page.evaluate((sel) => ({
        progress: !!document.querySelector('section[data-task="big"] [data-testid=reading]'),
        rows: document.querySelector(sel)?.textContent ?? '',
      }), counts);
      slowest = Math.max(slowest, Date.now() - p0);
      sawProgress ||= r.progress;
      await new Promise((res) => setTimeout(res, 100));
    }
  })();
  await page.setInputFiles('section[data-task="big"] input[data-testid=train-file]', file);
  await page.waitForFunction((sel) => /\d/.test(document.querySelector(sel)?.textContent ?? ''), counts, { timeout: 600_000, polling: 200 });
  const shown = Date.now() - t0;
  done = true;
  await watch;
  const text = await page.locator('section[data-task="big"] p').filter({ hasText: 'training examples' }).first().innerText();
  console.log(`upload of ${(size / 1e6).toFixed(1)} MB: ${text.trim()} after ${secs(shown)}; progress shown: ${sawProgress}; slowest main-thread answer ${slowest} ms`);
  const errors = await page.locator('[data-testid=error]').allInnerTexts();
  if (errors.length) console.log(`errors: ${errors.join(' | ')}`);
  // While the worker packs and the page saves, a reload asks first (beforeunload); stay.
  const saving = await page.locator('[data-testid=saving]').count();
  let dialog = null;
  page.once('dialog', (d) => { dialog = d.type(); d.dismiss().catch(() => {}); });
  if (saving) await page.reload({ timeout: 3000 }).catch(() => {});
  console.log(`right after the upload: "Saving…" shown: ${saving > 0}; a reload then asked first: ${dialog ?? 'no'}`);
  // Saved? Poll the bundle in IndexedDB until it holds the rows (it grows past 10 MB), then reload
  // and time until the rows are back.
  const savedIn = await page.evaluate(async (t0) => {
    const size = () => new Promise((resolve) => {
      const open = indexedDB.open('lorafuse');
      open.onsuccess = () => {
        try {
          const get = open.result.transaction('workspace').objectStore('workspace').get('current');
          get.onsuccess = () => { resolve(get.result?.byteLength ?? 0); open.result.close(); };
          get.onerror = () => resolve(-1);
        } catch (e) { resolve(-1); }
      };
      open.onerror = () => resolve(-1);
    });
    for (;;) {
      const n = await size();
      if (n > 10e6) return [Date.now() - t0, n];
      if (Date.now() - t0 > 600_000) return [null, n];
      await new Promise((r) => setTimeout(r, 500));
    }
  }, t0);
  console.log(`saved in IndexedDB ${savedIn[0] === null ? 'NOT within 600 s' : secs(savedIn[0]) + ' after the upload began'} (bundle ${(savedIn[1] / 1e6).toFixed(1)} MB)`);
  const r0 = Date.now();
  await page.reload({ waitUntil: 'domcontentloaded' });
  const back = await page.waitForFunction((sel) => /\d/.test(document.querySelector(sel)?.textContent ?? ''), counts, { timeout: 180_000, polling: 200 })
    .then(() => true, () => false);
  if (!back) {
    const msgs = await page.locator('.messages').first().innerText().catch(() => '');
    const status = await page.locator('[data-testid=model-status]').first().innerText().catch(() => '');
    console.log(`after a reload the rows are not back within 180 s; model: ${status}; messages: ${msgs}`);
    process.exitCode = 1;
    throw new Error('not restored');
  }
  console.log(`after a reload the task is back in ${secs(Date.now() - r0)}: ${(await page.locator('section[data-task="big"] p').filter({ hasText: 'training examples' }).first().innerText()).trim()}`);
} finally {
  await close();
  server.close();
}
