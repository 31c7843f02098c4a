// Accessibility checks for the browser test: axe-core (npm, run inside the page) and helpers for the
// keyboard-only walk. axe-core checks what a machine can check (names, roles, labels, contrast,
// ARIA use); whether the order and the announcements make sense is what the keyboard walk in
// app.test.mjs checks by using them.
import fs from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const AXE_SOURCE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

/** The impacts that fail the test. */
export const FAILING_IMPACTS = ['serious', 'critical'];

/**
 * Runs axe-core (WCAG 2.0/2.1/2.2 A and AA rules and best practices) on the page as it is now.
 * Resolves to { failing, other }: lists of { id, impact, help, nodes: [html snippet, …] }.
 * axe is injected with page.evaluate (not a <script> tag), so the page's CSP does not block it.
 */
export async function runAxe(page) {
  const result = await page.evaluate(async (src) => {
    if (!window.axe) (0, eval)(src);
    const r = await window.axe.run(document, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'] },
      resultTypes: ['violations'],
    });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.slice(0, 5).map((n) => `${n.target.join(' ')}: ${n.failureSummary?.split('\n').slice(1, 2).join(' ') ?? ''}`),
      count: v.nodes.length,
    }));
  }, AXE_SOURCE);
  return {
    failing: result.filter((v) => FAILING_IMPACTS.includes(v.impact)),
    other: result.filter((v) => !FAILING_IMPACTS.includes(v.impact)),
  };
}

/** One line per violation, with up to five of its elements. */
export function describeViolations(list) {
  return list.map((v) => `  [${v.impact}] ${v.id} (${v.count}×): ${v.help}\n` +
    v.nodes.map((n) => `      ${n}`).join('\n')).join('\n');
}

/**
 * Moves the keyboard focus with Tab (from wherever it is) until the focused element matches
 * `selector`, as a keyboard user would; fails after `max` presses (not reachable by keyboard).
 * Checks that the focused element shows a focus indicator (an outline or a box shadow).
 * Resolves to the number of presses.
 */
export async function tabTo(page, selector, { max = 300 } = {}) {
  for (let i = 0; i <= max; i++) {
    const state = await page.evaluate((sel) => {
      const e = document.activeElement;
      if (!e || !e.matches(sel)) return null;
      const s = getComputedStyle(e);
      const outline = s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0;
      return { visible: outline || (s.boxShadow && s.boxShadow !== 'none') };
    }, selector);
    if (state) {
      if (!state.visible) throw new Error(`${selector} has the keyboard focus but shows no focus indicator`);
      return i;
    }
    await page.keyboard.press('Tab');
  }
  throw new Error(`${selector} not reached with ${max} presses of Tab (not reachable by keyboard?)`);
}

/** Pages with a standing 'filechooser' listener (see chooseFileByKeyboard). */
const intercepting = new WeakSet();

/** Focuses `selector` by Tab and picks `file` in the file chooser that Space opens.
 *
 * Playwright intercepts file choosers only while the page has a 'filechooser' listener, and it
 * switches interception on and off without waiting for the browser. A lone waitForEvent therefore
 * races the key press: if the press wins, headless chromium opens a real chooser that nothing
 * answers, and no later chooser opens (this failed a second upload in 2 of 3 runs). So each page
 * gets one standing listener, and one round trip to the page makes sure interception is on. */
export async function chooseFileByKeyboard(page, selector, file, timeout) {
  if (!intercepting.has(page)) {
    page.on('filechooser', () => {});
    intercepting.add(page);
    await page.evaluate(() => 0);
  }
  await tabTo(page, selector);
  const [chooser] = await Promise.all([
    page.waitForEvent('filechooser', { timeout }),
    page.keyboard.press('Space'),
  ]);
  await chooser.setFiles(file);
}
