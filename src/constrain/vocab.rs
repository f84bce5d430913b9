//! The model's vocabulary as llguidance sees it: each token's bytes in a token trie, and the
//! end-of-generation tokens; built once per model, on another thread when it can be.

use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use llguidance::toktrie::{ApproximateTokEnv, TokEnv, TokRxInfo, TokTrie};
use llguidance::ParserFactory;

use crate::tokenizer::Tokenizer;

/// A model's vocabulary as the constraint engine sees it: each token's bytes (special tokens
/// marked so no grammar text matches them) and the end-of-generation tokens.
pub struct Vocab {
    pub(super) factory: ParserFactory,
    /// Every end-of-generation token id (the grammar's "end" allows them all).
    pub(super) eog: Vec<u32>,
}

impl std::fmt::Debug for Vocab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vocab").field("eog", &self.eog).finish()
    }
}

impl Vocab {
    pub fn new(tok: &Tokenizer) -> Arc<Vocab> {
        VocabSource::new(tok).build()
    }

    pub(super) fn eos(&self) -> u32 {
        self.factory.tok_env().tok_trie().eos_token()
    }
}

/// What [`Vocab`] is built from, taken from the tokenizer in a few milliseconds, so that the
/// slow part (the token trie and llguidance's token slices, a few hundred milliseconds for a
/// 150k vocabulary) can run on another thread while the model loads and reads the prompt.
pub struct VocabSource {
    words: Vec<Vec<u8>>,
    eog: Vec<u32>,
    info: TokRxInfo,
}

impl VocabSource {
    pub fn new(tok: &Tokenizer) -> VocabSource {
        let n = tok.n_vocab();
        let eog: Vec<u32> = (0..n as u32).filter(|&id| tok.is_eog(id)).collect();
        let words: Vec<Vec<u8>> = (0..n as u32)
            .map(|id| {
                let special = tok.is_control(id) || tok.is_eog(id);
                let piece = tok.piece(id, false);
                if special || piece.is_empty() {
                    // toktrie's marker for tokens grammar text never matches
                    let mut w = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                    let name = tok.piece(id, true);
                    if name.is_empty() {
                        w.extend_from_slice(format!("<[{id}]>").as_bytes());
                    } else {
                        w.extend_from_slice(name);
                    }
                    w
                } else {
                    piece.to_vec()
                }
            })
            .collect();
        let eos = tok.eos().or(eog.first().copied()).unwrap_or(0);
        let mut info = TokRxInfo::new(n as u32, eos);
        info.tok_bos = tok.bos();
        info.tok_end_of_turn = tok.eot();
        VocabSource { words, eog, info }
    }

    pub fn build(self) -> Arc<Vocab> {
        let mut trie = TokTrie::from(&self.info, &self.words);
        if !self.eog.is_empty() {
            trie = trie.with_eos_tokens(&self.eog);
        }
        let env: TokEnv = Arc::new(ApproximateTokEnv::new(trie));
        let mut factory =
            ParserFactory::new_simple(&env).expect("llguidance's default token slices compile");
        factory.quiet();
        Arc::new(Vocab {
            factory,
            eog: self.eog,
        })
    }
}

/// The thread building a vocabulary; it returns it with the time it took.
type VocabJob = JoinHandle<(Arc<Vocab>, Duration)>;

/// A model's [`Vocab`], built once, possibly on another thread ([`VocabCell::start`]) while
/// the model loads and reads the prompt; shared by the guards that wait for it.
#[derive(Default)]
pub struct VocabCell {
    vocab: OnceLock<Arc<Vocab>>,
    job: Mutex<Option<VocabJob>>,
}

impl VocabCell {
    /// Starts building the vocabulary of `tok` on another thread, unless it is built or being
    /// built.
    pub fn start(&self, tok: &Tokenizer) {
        let mut job = self.job.lock().unwrap_or_else(|p| p.into_inner());
        if self.vocab.get().is_some() || job.is_some() {
            return;
        }
        let src = VocabSource::new(tok);
        *job = Some(std::thread::spawn(move || {
            let t0 = Instant::now();
            let v = src.build();
            (v, t0.elapsed())
        }));
    }

    /// The vocabulary, waiting for its construction.
    ///
    /// # Panics
    /// When [`start`](Self::start) was never called.
    pub fn get(&self) -> Arc<Vocab> {
        self.vocab
            .get_or_init(|| {
                let t0 = Instant::now();
                let job = self
                    .job
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                    .expect("VocabCell::start before get");
                let (v, built) = match job.join() {
                    Ok(done) => done,
                    Err(panic) => std::panic::resume_unwind(panic),
                };
                log::info!(
                    "output constraint: token trie built in {:.1} ms ({:.1} ms waited for)",
                    built.as_secs_f64() * 1e3,
                    t0.elapsed().as_secs_f64() * 1e3
                );
                v
            })
            .clone()
    }
}
