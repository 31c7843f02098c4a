// The threaded engine worker's entry: a module worker the page starts as
// ./threads/start.js, named lorafuse-engine:N, when it is cross-origin isolated (src/app/bridge.rs). It loads the
// engine (wasm-bindgen --target web, scripts/build_threads.sh); the engine's start function starts
// the pool of N threads, then the message loop, and says "Started" (src/worker/web.rs).
import init from './engine.js';

init();
