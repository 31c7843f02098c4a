// lorafuse service worker: the page opens and works with no network after one visit.
//
// scripts/pwa.py (a Trunk post-build step) writes this file into the built page with SHELL (the
// page's own files), ENGINES (the files of each engine worker: `single`, WebGPU or one thread;
// `threads`, the CPU on a pool of threads) and VERSION (a hash of all those files' contents), so a
// new build is a new service worker and a new cache. The model is not here: the engine keeps it in
// its own Cache Storage bucket with sha256 checks.
//
// - install: the SHELL files of this build go into "lorafuse-shell-VERSION" (revalidated with the
//   server, so the copy is this build's, and not downloaded twice where the server answers 304).
// - message {keep: "single" | "threads"}: the page runs that engine; its files go into the same
//   cache (revalidated the same way: the page just loaded them), then the page is told
//   {kept: kind} or {keepFailed: kind, error}. Only the engine in use is kept, so a first
//   visit downloads one engine's wasm, not both.
// - activate: older shell caches are deleted; the new worker takes over open pages at once.
// - fetch: a kept file is answered from the cache (page loads are the same offline and online); an
//   engine file not kept yet goes to the network and is kept on the way; a navigation to the page,
//   with any query (?backend=cpu), gets index.html. Anything else, the model files included, is not
//   handled here and goes to the network as usual.
// Left out: background sync and push (nothing to sync: all work stays in the browser). An engine
// never used online is not there offline: the page then says so when it cannot start it.
const VERSION = '__VERSION__';
const SHELL = __SHELL__;
const ENGINES = __ENGINES__;
const ENGINE_FILES = [...ENGINES.single, ...ENGINES.threads];
const PREFIX = 'lorafuse-shell-';
const CACHE = PREFIX + VERSION;

const scopeUrl = (path) => new URL(path, self.registration.scope).href;

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    // Revalidated, not re-downloaded when the server says it has not changed (no second copy of
    // the page's wasm on a first visit), and never an older build's copy from the HTTP cache.
    await cache.addAll(SHELL.map((p) => new Request(scopeUrl(p), { cache: 'no-cache' })));
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) {
      if (key.startsWith(PREFIX) && key !== CACHE) await caches.delete(key);
    }
    await self.clients.claim();
  })());
});

self.addEventListener('message', (event) => {
  const kind = event.data?.keep;
  if (!Object.hasOwn(ENGINES, kind ?? '')) return;
  const reply = (msg) => event.source?.postMessage(msg);
  event.waitUntil((async () => {
    try {
      const cache = await caches.open(CACHE);
      for (const p of ENGINES[kind]) {
        const url = scopeUrl(p);
        if (await cache.match(url)) continue;
        const resp = await fetch(url, { cache: 'no-cache' }); // revalidated: never an older build's
        if (!resp.ok) throw new Error(`${p}: ${resp.status} ${resp.statusText}`);
        await cache.put(url, resp);
      }
      reply({ kept: kind });
    } catch (e) {
      reply({ keepFailed: kind, error: String(e?.message ?? e) });
    }
  })());
});

self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (req.method !== 'GET' || !req.url.startsWith(self.registration.scope)) return;
  const url = new URL(req.url);
  let key = null;
  const href = url.origin + url.pathname;
  const engine = ENGINE_FILES.some((p) => scopeUrl(p) === href);
  if (req.mode === 'navigate' && (href === scopeUrl('./') || href === scopeUrl('index.html'))) {
    key = scopeUrl('index.html');
  } else if (engine || SHELL.some((p) => scopeUrl(p) === href)) {
    key = href;
  }
  if (!key) return;
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    const hit = await cache.match(key);
    if (hit) return hit;
    const resp = await fetch(req);
    if (engine && resp.ok) event.waitUntil(cache.put(key, resp.clone()));
    return resp;
  })());
});
