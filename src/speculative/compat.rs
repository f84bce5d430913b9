//! Whether a draft model's vocabulary can stand in for the target's: the same tokenizer
//! type, the same BOS/EOS handling, sizes within a few tokens (padding), and the same text for
//! every token id both have (llama.cpp's rules).

use crate::tokenizer::Tokenizer;

/// Largest difference in vocabulary size accepted (embedding rows padded differently).
const MAX_SIZE_DIFFERENCE: usize = 128;
/// llama.cpp compares token texts from this id on (the first ids are specials).
const CHECK_FROM: usize = 5;

#[derive(Debug, thiserror::Error)]
#[error("the draft model's vocabulary differs from the target's: {0}")]
pub struct Incompatible(pub String);

pub fn check(target: &Tokenizer, draft: &Tokenizer) -> Result<(), Incompatible> {
    let bad = |s: String| Err(Incompatible(s));
    if target.vocab_type() != draft.vocab_type() {
        return bad(format!(
            "tokenizer type {} vs {}",
            target.vocab_type(),
            draft.vocab_type()
        ));
    }
    if target.add_bos() != draft.add_bos() || target.bos() != draft.bos() {
        return bad(format!(
            "BOS {:?} (added: {}) vs {:?} (added: {})",
            target.bos(),
            target.add_bos(),
            draft.bos(),
            draft.add_bos()
        ));
    }
    if target.eos() != draft.eos() {
        return bad(format!("EOS {:?} vs {:?}", target.eos(), draft.eos()));
    }
    let (nt, nd) = (target.n_vocab(), draft.n_vocab());
    if nt.abs_diff(nd) > MAX_SIZE_DIFFERENCE {
        return bad(format!("{nt} tokens vs {nd}"));
    }
    for id in CHECK_FROM..nt.min(nd) {
        let id = id as u32;
        if target.token_text(id) != draft.token_text(id) {
            return bad(format!(
                "token {id} is {:?} in the target and {:?} in the draft",
                target.token_text(id),
                draft.token_text(id)
            ));
        }
    }
    Ok(())
}
