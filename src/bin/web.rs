//! The web page's entry point (built by Trunk for wasm32; see index.html).

#[cfg(target_arch = "wasm32")]
fn main() {
    lorafuse::wasm_ctors::run_once();
    lorafuse::app::start();
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("the web page is built for the browser: run ./scripts/serve");
    std::process::exit(2);
}
