//! Metadata that must agree with the tensors, checked at load before any tensor is bound, so
//! that a disagreement is refused with one line naming both sides instead of running (a
//! vocabulary shorter than the embedding loads and samples ids that have no text) or failing
//! later with a message about only one side. llama.cpp refuses the same files.
//!
//! What is checked where:
//! - here: the vocabulary size, from `tokenizer.ggml.tokens` and `{arch}.vocab_size`, against
//!   the rows of `token_embd` and `output`;
//! - `hparams`: per-layer metadata arrays have one entry per layer (`{arch}.block_count`);
//! - the tokenizer: special-token ids (`tokenizer.ggml.*_token_id`) lie inside the vocabulary.

use crate::gguf::GgufFile;

use super::hparams::Key;
use super::names::W;

/// Two sides of a model file that should agree and do not.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("model metadata disagrees with the tensors: {left}, but {right}")]
pub struct Disagreement {
    pub left: String,
    pub right: String,
}

/// The vocabulary's sizes in the metadata against the rows of the token embedding and of the
/// output matrix (each one that is present with two or more dimensions; a missing or
/// misshapen tensor is the binder's error).
pub fn check_vocab(f: &GgufFile, arch: &str) -> Result<(), Disagreement> {
    // (how the metadata says it, the size)
    let mut sizes: Vec<(String, u64)> = Vec::new();
    if let Some(a) = f.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()) {
        let n = a.len() as u64;
        sizes.push((format!("tokenizer.ggml.tokens lists {n} tokens"), n));
    }
    let key = Key::VocabSize.name(arch);
    if let Some(n) = f.get(&key).and_then(|v| v.as_u64()) {
        sizes.push((format!("{key} is {n}"), n));
    }
    for w in [W::TokenEmbd, W::Output] {
        let name = w.name(None, "weight");
        let Some(&rows) = f.tensor(&name).and_then(|t| t.dims.get(1)) else {
            continue;
        };
        if let Some((said, _)) = sizes.iter().find(|&&(_, n)| n != rows) {
            return Err(Disagreement {
                left: said.clone(),
                right: format!("{name} has {rows} rows (one per token)"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check_vocab, Disagreement};
    use crate::gguf::{GgmlType, GgufFile, GgufWriter, Value, ValueType};

    /// A file with `tokens` vocabulary entries, maybe `llama.vocab_size`, and token embedding
    /// and output matrices of the given rows (4 wide).
    fn file(tokens: usize, vocab_size: Option<u32>, embd: u64, output: Option<u64>) -> GgufFile {
        let mut w = GgufWriter::new();
        w.add("general.architecture", Value::String("llama".into()));
        w.add(
            "tokenizer.ggml.tokens",
            Value::array(ValueType::String, vec![Value::String("x".into()); tokens]),
        );
        if let Some(n) = vocab_size {
            w.add("llama.vocab_size", Value::U32(n));
        }
        let mut t = |name: &str, rows: u64| {
            w.add_tensor(name, GgmlType::F32, &[4, rows], vec![0; 16 * rows as usize]);
        };
        t("token_embd.weight", embd);
        if let Some(rows) = output {
            t("output.weight", rows);
        }
        GgufFile::from_bytes(w.to_bytes()).unwrap()
    }

    fn check(f: &GgufFile) -> Result<(), String> {
        check_vocab(f, "llama").map_err(|e| e.to_string())
    }

    #[test]
    fn agreeing_sizes_pass() {
        assert_eq!(check(&file(10, None, 10, Some(10))), Ok(()));
        assert_eq!(check(&file(10, Some(10), 10, None)), Ok(()));
    }

    #[test]
    fn a_vocabulary_shorter_or_longer_than_the_embedding_is_refused() {
        // The case that loaded and generated before: the vocab_size key agrees with the
        // tensors, the token list does not.
        assert_eq!(
            check(&file(8, Some(10), 10, Some(10))),
            Err(
                "model metadata disagrees with the tensors: tokenizer.ggml.tokens lists 8 \
                 tokens, but token_embd.weight has 10 rows (one per token)"
                    .into()
            )
        );
        assert!(check(&file(12, None, 10, None))
            .unwrap_err()
            .contains("lists 12 tokens, but token_embd.weight has 10 rows"));
        assert_eq!(
            check_vocab(&file(10, Some(11), 10, None), "llama"),
            Err(Disagreement {
                left: "llama.vocab_size is 11".into(),
                right: "token_embd.weight has 10 rows (one per token)".into()
            })
        );
    }

    #[test]
    fn the_output_matrix_is_checked_too() {
        assert!(check(&file(10, None, 10, Some(9)))
            .unwrap_err()
            .ends_with("lists 10 tokens, but output.weight has 9 rows (one per token)"));
    }
}
