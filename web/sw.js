// lorafuse service worker: the page opens and works with no network after one visit.
//
// scripts/pwa.py (a Trunk post-build step) writes this file into the built page with SHELL (every
// file of the build but the model, which the engine keeps in its own Cache Storage bucket with
// sha256 checks) and VERSION (a hash of those files' contents), so a new build is a new service
// worker and a new cache.
//
// - install: the shell files of this build go into "lorafuse-shell-VERSION" (fetched past the HTTP
//   cache, so the copy is this build's).
// - activate: older shell caches are deleted; the new worker takes over open pages at once.
// - fetch: a shell file is answered from the cache (page loads are the same offline and online);
//   a navigation to the page, with any query (?backend=cpu), gets index.html. Anything else, the
//   model files included, is not handled here and goes to the network as usual.
// Left out: background sync and push (nothing to sync: all work stays in the browser).
const VERSION = '__VERSION__';
const SHELL = __SHELL__;
const PREFIX = 'lorafuse-shell-';
const CACHE = PREFIX + VERSION;

const scopeUrl = (path) => new URL(path, self.registration.scope).href;

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    await cache.addAll(SHELL.map((p) => new Request(scopeUrl(p), { cache: 'reload' })));
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

self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (req.method !== 'GET' || !req.url.startsWith(self.registration.scope)) return;
  const url = new URL(req.url);
  let key = null;
  const href = url.origin + url.pathname;
  if (req.mode === 'navigate' && (href === scopeUrl('./') || href === scopeUrl('index.html'))) {
    key = scopeUrl('index.html');
  } else if (SHELL.some((p) => scopeUrl(p) === href)) {
    key = href;
  }
  if (!key) return;
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    const hit = await cache.match(key);
    return hit ?? fetch(req);
  })());
});
