//! `ember tokenize`: text → token ids with a model's vocabulary, printed as llama.cpp's
//! `llama-tokenize` prints them (default: `id -> 'piece'` per line; `--ids`: `[1, 2, 3]`), or
//! as JSON. Only the tokenizer is loaded, so a vocab-only GGUF works.

use std::io::{BufWriter, Write};

use anyhow::{Context as _, Result};

use crate::cli::args::TokenizeArgs;
use crate::cli::config::default_model_path;
use crate::model::open_gguf;
use crate::tokenizer::Tokenizer;

/// The text, with backslash sequences processed in every input as llama-tokenize does.
fn read_text(a: &TokenizeArgs) -> Result<String> {
    let text = super::input::read_text(a.prompt.as_deref(), a.file.as_deref(), a.stdin, "text")?;
    Ok(if a.no_escape {
        text
    } else {
        crate::cli::process_escapes(&text)
    })
}

pub fn run(a: &TokenizeArgs) -> Result<()> {
    let path = match &a.model {
        Some(p) => p.clone(),
        None => default_model_path()?,
    };
    let text = read_text(a)?;
    let shown = path.display().to_string();
    let file = open_gguf(&path, false).with_context(|| format!("loading {shown}"))?;
    let tok = Tokenizer::from_gguf(&file).with_context(|| format!("tokenizer of {shown}"))?;
    let add_special = tok.add_bos() && !a.no_bos;
    let ids = tok.encode(&text, add_special, !a.no_parse_special);

    let mut out = BufWriter::new(std::io::stdout().lock());
    if a.ids {
        let list: Vec<String> = ids.iter().map(u32::to_string).collect();
        writeln!(out, "[{}]", list.join(", "))?;
    } else if a.json {
        let tokens: Vec<serde_json::Value> = ids
            .iter()
            .map(|&id| {
                let piece = tok.token_to_piece(id, true);
                serde_json::json!({"id": id, "piece": String::from_utf8_lossy(&piece)})
            })
            .collect();
        let v = serde_json::json!({"n_tokens": ids.len(), "tokens": tokens});
        writeln!(out, "{v}")?;
    } else {
        for &id in &ids {
            out.write_all(&tok.describe_token(id))?;
            writeln!(out)?;
        }
    }
    if a.show_count && !a.json {
        writeln!(out, "Total number of tokens: {}", ids.len())?;
    }
    out.flush()?;
    Ok(())
}
