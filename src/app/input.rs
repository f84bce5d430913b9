//! Reading the text a mode works on: `-p TEXT`, else `-f FILE`, else standard input.

use std::io::{IsTerminal, Read};
use std::path::Path;

use anyhow::{Context as _, Result};

use crate::cli::config::UsageError;

/// The text from `prompt`, else from `file`, else from stdin. Stdin attached to a terminal is a
/// usage error unless `stdin_requested` (the user asked to type it). `what` names the text in
/// messages ("prompt", "text"). Files and stdin must be UTF-8.
pub fn read_text(
    prompt: Option<&str>,
    file: Option<&Path>,
    stdin_requested: bool,
    what: &str,
) -> Result<String> {
    if let Some(p) = prompt {
        return Ok(p.to_string());
    }
    let bytes = if let Some(f) = file {
        std::fs::read(f).with_context(|| format!("reading the {what} file {}", f.display()))?
    } else {
        let stdin = std::io::stdin();
        if stdin.is_terminal() && !stdin_requested {
            return Err(UsageError(format!(
                "no {what}: give -p TEXT, -f FILE, or pipe text on stdin"
            ))
            .into());
        }
        let mut b = Vec::new();
        stdin
            .lock()
            .read_to_end(&mut b)
            .with_context(|| format!("reading the {what} from stdin"))?;
        b
    };
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "the {what} is not valid UTF-8 (at byte {})",
            e.utf8_error().valid_up_to()
        )
    })
}
