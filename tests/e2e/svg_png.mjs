// Renders SVG charts (plotters' output: the benchmarks' plots in docs/) to PNG with the headless
// Chromium the browser tests use, at the SVG's own size times --scale (default 2, for sharp text).
// Usage: node tests/e2e/svg_png.mjs [--scale S] FILE.svg... (writes FILE.png beside each).
// What it leaves out: any drawing of its own; the chart is plotters', pixel for pixel as a
// browser shows the SVG.
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { chromiumArgs } from './app.test.mjs';

const args = process.argv.slice(2);
let scale = 2;
const files = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--scale') scale = Number(args[++i]);
  else files.push(args[i]);
}
if (!files.length || !(scale > 0 && scale <= 8)) {
  console.error('usage: node tests/e2e/svg_png.mjs [--scale S (0-8]] FILE.svg...');
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.LORAFUSE_E2E_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: chromiumArgs(),
});
let failed = false;
try {
  for (const file of files) {
    const svg = fs.readFileSync(file, 'utf8');
    const m = /<svg[^>]*\bwidth="(\d+(?:\.\d+)?)"[^>]*\bheight="(\d+(?:\.\d+)?)"/.exec(svg);
    if (!m) {
      console.error(`${file}: no <svg width=.. height=..> found; not a plotters chart?`);
      failed = true;
      continue;
    }
    const [w, h] = [Math.ceil(Number(m[1])), Math.ceil(Number(m[2]))];
    const page = await browser.newPage({ viewport: { width: w, height: h }, deviceScaleFactor: scale });
    await page.setContent(`<!doctype html><style>html,body{margin:0;background:#fff}</style>${svg}`);
    const out = file.replace(/\.svg$/i, '') + '.png';
    await page.locator('svg').first().screenshot({ path: out });
    await page.close();
    console.log(`wrote ${out} (${w * scale} x ${h * scale} px, ${fs.statSync(out).size} bytes)`);
  }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
