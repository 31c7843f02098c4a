//! Static constructors, run once, at the start of each wasm program (the page and the engine).
//!
//! Some dependencies register things before `main` (`inventory`, used by `pliron` under cubecl): on
//! wasm those are "constructors" that wasm-ld gathers into `__wasm_call_ctors`. A Rust binary is a
//! "command"-style link, and when nothing calls `__wasm_call_ctors` itself, wasm-ld assumes the
//! module is entered once and wraps **every export** so that it runs the constructors first
//! (`<export>.command_export`; llvm-project lld/wasm/Writer.cpp, see also dtolnay/inventory#76).
//! A wasm-bindgen program is entered thousands of times (every callback, every externref), so the
//! page spent most of a warm reload re-running them: a CPU profile of the UI showed
//! `__wasm_call_ctors` and `inventory` submissions as its hottest functions. Calling it explicitly
//! turns the wrapping off; [`run_once`] does that at the top of `main`.
//!
//! Left out: native builds (constructors run once there already).

use std::sync::atomic::{AtomicBool, Ordering};

unsafe extern "C" {
    /// Synthesised by wasm-ld: runs every static constructor of the program.
    fn __wasm_call_ctors();
}

/// Runs the program's static constructors unless they ran already. In the threaded engine the
/// flag lives in the shared memory, so the pool's threads (which run `main` too) do not run them
/// again over what the first thread registered.
pub fn run_once() {
    static DONE: AtomicBool = AtomicBool::new(false);
    if !DONE.swap(true, Ordering::SeqCst) {
        // SAFETY: `__wasm_call_ctors` takes no arguments and is defined by the linker for every
        // wasm program; the flag makes this the only call.
        unsafe { __wasm_call_ctors() }
    }
}
