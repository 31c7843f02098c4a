//! `lorafuse embed`: a text's sentence embedding, with an adapter if given.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use lorafuse::host::block_on;

use crate::args::Common;
use crate::io::{load_engine, read_task};

#[derive(Args)]
pub struct EmbedArgs {
    /// The text to embed.
    #[arg(long)]
    text: String,
    /// An adapter folder (ours or PEFT's) to apply.
    #[arg(long)]
    adapter: Option<PathBuf>,
}

pub fn run(common: &Common, a: EmbedArgs) -> Result<()> {
    let engine = load_engine(common)?;
    let adapter = a.adapter.map(|dir| read_task(&engine, &dir)).transpose()?;
    let v = block_on(engine.embed(&[a.text], adapter.as_ref().map(|t| &t.adapter)))?;
    outln!("{}", serde_json::to_string(&v[0])?)?;
    Ok(())
}
