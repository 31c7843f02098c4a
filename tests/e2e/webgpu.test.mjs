// WebGPU check in the browser: the page on `?backend=webgpu` in headless chromium with
// --enable-unsafe-webgpu (a SwiftShader software adapter on a machine without a GPU). It checks
// that the engine runs on WebGPU, that its sentence embedding agrees with the CPU backend's within
// 1e-3, and that one LoRA training step runs on WebGPU (the page's "Check backend" button; the
// worker reads tensors back only asynchronously).
//
//   node tests/e2e/webgpu.test.mjs [dist-folder]
//
// SwiftShader is ~100x slower than the CPU backend, so this checks correctness on one sentence only.

import path from 'node:path';
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import { startServer, chromiumArgs } from './app.test.mjs';

const SCALE = Number(process.env.LORAFUSE_E2E_TIMEOUT_SCALE || 1) || 1;

async function main() {
  const dist = path.resolve(process.argv[2] ?? 'dist');
  const { server, origin } = await startServer(dist);
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'lorafuse-webgpu-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.LORAFUSE_E2E_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [...chromiumArgs(), '--enable-unsafe-webgpu'],
  });
  const lines = [];
  let failure = null;
  try {
    const page = await context.newPage();
    page.on('console', (m) => lines.push(`[${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => lines.push(`[pageerror] ${e.message}`));
    const t0 = Date.now();
    await page.goto(origin + '/?backend=webgpu');
    await page.waitForFunction(
      () => /ready|could not/i.test(document.querySelector('[data-testid=model-status]')?.textContent ?? ''),
      null,
      { timeout: 300_000 * SCALE },
    );
    const status = await page.textContent('[data-testid=model-status]');
    const backend = await page.textContent('[data-testid=backend]');
    console.log(`model: ${status.trim()} · backend: ${backend.trim()} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    if (!/^WebGPU/.test(backend.trim())) throw new Error(`expected a WebGPU backend, got ${JSON.stringify(backend)}; messages: ${await page.textContent('.messages')}`);
    const t1 = Date.now();
    await page.click('#backend-check');
    await page.waitForFunction(
      () => /max \|Δ\|/.test(document.querySelector('[data-testid=backend-check]')?.textContent ?? '')
        || document.querySelector('[data-testid=error]'),
      null,
      { timeout: 540_000 * SCALE },
    );
    const text = (await page.textContent('[data-testid=backend-check]')).trim();
    console.log(`check (${((Date.now() - t1) / 1000).toFixed(1)} s): ${text}`);
    const m = /max \|Δ\| vs CPU = ([0-9.eE+-]+); one LoRA step: loss ([0-9.eE+-]+|NaN)/.exec(text);
    if (!m) throw new Error(`no check result; messages: ${await page.textContent('.messages')}`);
    const diff = Number(m[1]);
    const loss = Number(m[2]);
    if (!(diff < 1e-3)) throw new Error(`WebGPU and CPU embeddings differ by ${diff} (limit 1e-3)`);
    if (!Number.isFinite(loss) || loss <= 0) throw new Error(`the WebGPU training step gave loss ${loss}`);
    console.log(`WebGPU check passed: max |Δ| = ${diff.toExponential(2)} < 1e-3, training step loss ${loss}`);

    // A lost WebGPU device (destroyed, as a driver reset would): the page goes on with the CPU
    // backend and the workspace it had.
    const FIXTURE = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../fixtures/data/e2e_sentiment.csv');
    const card = 'section[data-task="kept"]';
    await page.fill('#new-task-name', 'kept');
    await page.click('#add-task');
    await page.setInputFiles(`${card} input[data-testid=train-file]`, FIXTURE);
    await page.waitForFunction((c) => /positive/.test(document.querySelector(`${c} [data-testid=class-counts]`)?.textContent ?? ''), card, { timeout: 60_000 * SCALE });
    await page.waitForSelector('[data-testid=saving]', { state: 'detached', timeout: 60_000 * SCALE });
    const t2 = Date.now();
    await page.evaluate(() => window.lorafuseLoseDevice());
    await page.waitForFunction(
      () => /CPU/.test(document.querySelector('[data-testid=backend]')?.textContent ?? '')
        && /ready/i.test(document.querySelector('[data-testid=model-status]')?.textContent ?? ''),
      null,
      { timeout: 300_000 * SCALE },
    ).catch(async () => {
      throw new Error(`after the device loss the page is not ready on the CPU backend; backend ${await page.textContent('[data-testid=backend]')}; messages: ${await page.textContent('.messages')}`);
    });
    const msgs = (await page.textContent('.messages')) ?? '';
    if (!/WebGPU device was lost/.test(msgs)) throw new Error(`no message about the lost device: ${msgs}`);
    const counts = (await page.textContent(`${card} [data-testid=class-counts]`).catch(() => '')) ?? '';
    if (!/positive/.test(counts) || !/negative/.test(counts)) throw new Error(`the workspace was not kept after the device loss: ${counts}`);
    console.log(`device loss: on ${(await page.textContent('[data-testid=backend]')).trim()} after ${((Date.now() - t2) / 1000).toFixed(1)} s, task "kept" intact (${counts.replace(/\s+/g, ' ').trim()}); ${msgs.match(/[^.]*device was lost[^—]*/)?.[0]?.trim()}`);
  } catch (e) {
    failure = e;
  }
  await context.close().catch(() => {});
  fs.rmSync(userDataDir, { recursive: true, force: true });
  server.close();
  if (failure) {
    console.log(lines.slice(-30).join('\n'));
    console.error(`FAILED: ${failure.message}`);
    process.exit(1);
  }
}

main().catch((e) => {
  console.error(`FAILED: ${e.stack || e}`);
  process.exit(1);
});
