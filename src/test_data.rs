//! Where unit tests find the real data fetched outside the repository (test builds only). A
//! test that needs a file fails, naming the command that fetches it, when it is absent.

use std::path::{Path, PathBuf};

pub fn home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
}

/// A real model file: in the repository's `models/` (where `models/fetch-default` puts
/// SmolLM2), else in `~/.cache/models` (where the shared fetch script puts every model); fails
/// naming `fetch` (how to get it) when it is in neither.
pub fn real_model(file: &str, fetch: &str) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(file);
    let path = if repo.exists() {
        repo
    } else {
        home().join(".cache/models").join(file)
    };
    assert!(path.exists(), "{} not found: {fetch}", path.display());
    path
}

/// llama.cpp's tokenizer vectors: `$VOCAB_DIR`, else `~/.cache/vocab-tests`
/// (`scripts/fetch-vocab-tests` fetches them).
pub fn vocab_dir() -> PathBuf {
    std::env::var_os("VOCAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/vocab-tests"))
}
