//! An uploaded zip, classified as the page does (a workspace bundle or an adapter folder): any bytes
//! give a workspace, an adapter's files or an error, never a panic or an allocation past the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lorafuse::workspace::bundle;

fuzz_target!(|bytes: &[u8]| {
    let _ = bundle::classify(bytes);
});
