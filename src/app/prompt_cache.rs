//! `--prompt-cache FILE`: the KV state after the prompt, saved for the next run, which
//! evaluates only what follows the longest prefix it shares with the saved prompt.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use anyhow::{Context as _, Result};

use crate::generate::state::StateError;
use crate::generate::Session;

/// Restore the file's state into `session` (if the file exists) and return how many leading
/// tokens of `prompt` it already holds. The last prompt token is always left to evaluate.
pub fn restore(session: &mut Session, path: &Path, prompt: &[u32]) -> Result<usize> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            log::info!(
                "prompt cache {} does not exist yet; it will be written",
                path.display()
            );
            return Ok(0);
        }
        Err(e) => {
            return Err(e).with_context(|| format!("opening the prompt cache {}", path.display()))
        }
    };
    let saved = match session.load_state(&mut BufReader::new(f)) {
        Ok(saved) => saved,
        Err(StateError::Version(v)) => {
            log::warn!(
                "prompt cache {} was written by another Ember (format {v}); it will be rewritten",
                path.display()
            );
            return Ok(0);
        }
        Err(e) => return Err(e).with_context(|| format!("prompt cache {}", path.display())),
    };
    let common = saved
        .tokens
        .iter()
        .zip(prompt)
        .take_while(|(a, b)| a == b)
        .count();
    let reuse = common.min(prompt.len().saturating_sub(1));
    // a sliding-window ring that moved past the shared prefix keeps nothing
    let reuse = session.truncate(reuse as u32) as usize;
    log::info!(
        "prompt cache {}: {} of the prompt's {} tokens re-used ({} saved)",
        path.display(),
        reuse,
        prompt.len(),
        saved.tokens.len()
    );
    Ok(reuse)
}

/// Save the first `prompt.len()` positions of the cache (written to a temporary file, then
/// renamed, so a failed write never leaves half a cache behind).
pub fn save(session: &Session, path: &Path, prompt: &[u32]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let write = || -> Result<()> {
        let mut w = BufWriter::new(File::create(&tmp)?);
        session.save_state(&mut w, prompt, &[])?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        e.context(format!("writing the prompt cache {}", path.display()))
    })?;
    log::info!(
        "prompt cache {}: saved {} tokens",
        path.display(),
        prompt.len()
    );
    Ok(())
}
