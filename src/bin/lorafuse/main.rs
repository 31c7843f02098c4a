//! `lorafuse`: the native command line over the same engine and experiment code the browser runs.
//!
//! One file per command (`embed`, `train`, `predict`, `eval`, `fuse`, `bench`, `bench-speed`,
//! `bench-transfer`; `snapshot.rs` keeps the benchmarks' stage-1 results between runs);
//! shared arguments in `args.rs`, reading files and drawing progress in `io.rs`. Every command
//! reads the base model from `--model-dir` (default `public/models/all-MiniLM-L6-v2`, placed
//! there by `scripts/setup`).

use anyhow::Result;
use clap::{Parser, Subcommand};

/// `println!` that gives an error instead of panicking when stdout is closed early, as by
/// `lorafuse embed … | head`; [`main`] ends quietly on that error.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($t)*)
    }};
}

mod args;
mod bench;
mod bench_speed;
mod embed;
mod eval;
mod fuse;
mod io;
mod predict;
mod snapshot;
mod train;
mod transfer;

#[derive(Parser)]
#[command(
    name = "lorafuse",
    version,
    about = "LoRA adapters and attention fusion for text classification (native CLI)"
)]
struct Cli {
    #[command(flatten)]
    common: args::Common,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the L2-normalised mean-pooled sentence embedding of a text as a JSON array.
    Embed(embed::EmbedArgs),
    /// Train one task's LoRA adapter and head (stage 1) and write its adapter folder.
    Train(train::TrainArgs),
    /// Predict labels of texts with a trained task (`--adapter`) or with every task of a fused model (`--fused`).
    Predict(predict::PredictArgs),
    /// Evaluate a trained task on a labelled file: accuracy (95 % interval), macro-F1, MCC,
    /// calibration at the task's temperature, per-class scores, confusion matrix.
    Eval(eval::EvalArgs),
    /// Measure inference and LoRA training throughput at batch 32, sequence length 64.
    BenchSpeed(bench_speed::BenchArgs),
    /// Train the attention fusion (stage 2) over trained task adapters and write a fused model folder.
    Fuse(fuse::FuseArgs),
    /// Compare frozen, single-task LoRA and the hybrid on several datasets and seeds (docs/design.md §1.5).
    Bench(bench::BenchArgs),
    /// Transfer benchmark: small target tasks fused with adapters of larger source tasks, against
    /// the own LoRA, sequential transfer and the sources' heads (docs/design.md §1.7).
    BenchTransfer(transfer::TransferArgs),
}

fn main() {
    keep_freed_memory();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        let closed = e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        });
        if closed {
            // The reader of our output went away (`| head`): not an error of ours.
            std::process::exit(0);
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let c = &cli.common;
    match cli.command {
        Command::Embed(a) => embed::run(c, a),
        Command::Train(a) => train::run(c, a),
        Command::Predict(a) => predict::run(c, a),
        Command::Eval(a) => eval::run(c, a),
        Command::BenchSpeed(a) => bench_speed::run(c, a),
        Command::Fuse(a) => fuse::run(&io::load_engine(c)?, a),
        Command::Bench(a) => bench::run(&io::load_engine(c)?, a),
        Command::BenchTransfer(a) => transfer::run(&io::load_engine(c)?, a),
    }
}

/// glibc's malloc gives every block above 128 KiB its own mapping and trims the heap's free top,
/// so each of the many large tensors of a forward pass (a few MB each) is fresh memory whose pages
/// fault in and are zeroed by the kernel again: 6 % of an inference pass in a profile, plus the
/// unmapping. Blocks up to 32 MiB (glibc's largest threshold) now come from the heap, which is never
/// trimmed, so freed tensors are reused: one thread, batch 32, inference about 1.2x and LoRA
/// training 1.1x as fast (README "Native"). The heap then stays at its peak until the process ends.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes malloc's parameters; it is called before any other thread
    // exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
