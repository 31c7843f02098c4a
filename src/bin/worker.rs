//! The engine worker's entry point (built by Trunk for wasm32 as a Web Worker; see index.html).

#[cfg(target_arch = "wasm32")]
fn main() {
    lorafuse::wasm_ctors::run_once();
    lorafuse::worker::web::start();
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("the engine worker runs in the browser: run ./scripts/serve");
    std::process::exit(2);
}
