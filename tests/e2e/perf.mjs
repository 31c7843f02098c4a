// Measures the web page in headless chromium (a benchmark, not a test: it asserts nothing about
// speed). Prints the wasm sizes (raw, gzip), the time to a ready model cold (network) and warm
// (Cache Storage), the time to the first prediction after a warm reload, the engine's inference time
// per sentence (one task), and stage-1 training speed (examples/s) on the chosen backend.
//
//   node tests/e2e/perf.mjs [dist] [cpu|webgpu]      (scripts/bench-web)

import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { chromium } from 'playwright-core';
import os from 'node:os';
import { startServer, chromiumArgs } from './app.test.mjs';

const dist = path.resolve(process.argv[2] ?? 'dist');
const backend = process.argv[3] ?? 'cpu';
const FIXTURE = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../fixtures/data/e2e_sentiment.csv');
const SENTENCES = [
  'a wonderful, moving film that I loved',
  'the plot is thin and the acting is wooden',
  'an hour and a half of my life I will never get back',
  'sharp writing and a terrific cast',
  'it is neither funny nor scary',
  'a quiet, patient and beautiful study of grief',
  'the best thing about it is the soundtrack',
  'I laughed from start to finish',
  'clumsy, loud and far too long',
  'a small gem',
];

function sizes() {
  const rows = [];
  for (const f of fs.readdirSync(dist).filter((f) => f.endsWith('.wasm') || f.endsWith('.js'))) {
    const b = fs.readFileSync(path.join(dist, f));
    rows.push({ file: f, raw: b.length, gzip: zlib.gzipSync(b, { level: 9 }).length });
  }
  return rows;
}

const mb = (n) => (n / 1e6).toFixed(2) + ' MB';

async function waitReady(page, timeout = 600_000) {
  const t0 = Date.now();
  await page.waitForFunction(
    () => /ready|could not/i.test(document.querySelector('[data-testid=model-status]')?.textContent ?? ''),
    null,
    { timeout },
  );
  return Date.now() - t0;
}

async function predict(page, text) {
  const before = await page.evaluate(() => document.querySelector('[data-testid=live-results] .hint')?.textContent ?? '');
  const t0 = Date.now();
  await page.fill('#live-text', text);
  await page.waitForFunction(
    (b) => {
      const h = document.querySelector('[data-testid=live-results] .hint')?.textContent ?? '';
      return h && h !== b;
    },
    before,
    { timeout: 600_000 },
  );
  const hint = await page.textContent('[data-testid=live-results] .hint');
  const ms = Number(/([\d.]+) ms in the engine/.exec(hint)?.[1]);
  return { wall: Date.now() - t0, engine: ms };
}

async function main() {
  console.log(`backend: ${backend}`);
  for (const r of sizes()) console.log(`size ${r.file}: ${mb(r.raw)} raw, ${mb(r.gzip)} gzip`);
  const { server, origin } = await startServer(dist);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lorafuse-perf-'));
  const args = chromiumArgs();
  if (backend === 'webgpu') args.push('--enable-unsafe-webgpu');
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.LORAFUSE_E2E_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args,
  });
  try {
    const page = await context.newPage();
    const url = `${origin}/?backend=${backend}`;
    let t0 = Date.now();
    await page.goto(url);
    const cold = await waitReady(page) + 0;
    console.log(`cold start to model ready: ${((Date.now() - t0) / 1000).toFixed(1)} s (${await page.textContent('[data-testid=backend]')})`);
    await page.fill('#new-task-name', 'sentiment');
    await page.click('#add-task');
    await page.waitForSelector('section[data-task="sentiment"]');
    await page.setInputFiles('section[data-task="sentiment"] input[data-testid=train-file]', FIXTURE);
    await page.waitForFunction(() => /40 training examples/.test(document.querySelector('section[data-task="sentiment"]')?.textContent ?? ''));
    await page.fill('section[data-task="sentiment"] input[name=epochs]', '3');
    await page.dispatchEvent('section[data-task="sentiment"] input[name=epochs]', 'change');
    await page.waitForTimeout(300);
    t0 = Date.now();
    await page.click('section[data-task="sentiment"] [data-testid=train]');
    let speed = '';
    while (true) {
      const s = await page.evaluate(() => document.querySelector('section[data-task="sentiment"] .progress-line span')?.textContent ?? '');
      if (s) speed = s;
      if ((await page.getAttribute('section[data-task="sentiment"]', 'data-trained')) === 'true') break;
      await page.waitForTimeout(200);
    }
    const trainSec = (Date.now() - t0) / 1000;
    const eps = /([\d.]+) examples\/s/.exec(speed)?.[1];
    console.log(`training: 32 examples x 3 epochs in ${trainSec.toFixed(1)} s wall (incl. per-epoch validation on 8); last progress: ${eps} examples/s`);
    await predict(page, 'warm-up sentence');
    const engine = [];
    const wall = [];
    for (const s of SENTENCES) {
      const r = await predict(page, s);
      engine.push(r.engine);
      wall.push(r.wall);
    }
    const mean = (v) => v.reduce((a, b) => a + b, 0) / v.length;
    console.log(`inference (1 task, 1 encoder pass): ${mean(engine).toFixed(1)} ms per sentence in the engine (median ${engine.sort((a, b) => a - b)[5]} ms); ${mean(wall).toFixed(0)} ms from typing to shown (incl. 250 ms debounce)`);
    t0 = Date.now();
    await page.reload();
    const warm = await waitReady(page);
    await page.waitForSelector('section[data-task="sentiment"][data-trained="true"]', { timeout: 120_000 });
    const first = await predict(page, SENTENCES[0]);
    console.log(`warm reload: model ready in ${((Date.now() - t0 - first.wall) / 1000).toFixed(1)} s; first prediction ${first.wall} ms later (engine ${first.engine} ms); total ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    void cold;
    void warm;
  } finally {
    await context.close().catch(() => {});
    fs.rmSync(dir, { recursive: true, force: true });
    server.close();
  }
}

main().catch((e) => {
  console.error(`FAILED: ${e.stack || e}`);
  process.exit(1);
});
