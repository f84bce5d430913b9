//! `ember info MODEL [--json]`: metadata and tensor table.

use std::io::Write;

use anyhow::{Context as _, Result};

use crate::cli::args::InfoArgs;
use crate::gguf::{describe_json, describe_text};
use crate::model::open_gguf;

pub fn run(a: &InfoArgs) -> Result<()> {
    let f = open_gguf(&a.model, false).with_context(|| format!("reading {}", a.model.display()))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if a.json {
        let v = describe_json(&f);
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
    } else {
        describe_text(&f, &mut out)?;
    }
    out.flush()?;
    Ok(())
}
