//! One answer's constraint: the parser state after the tokens so far, the next token's mask,
//! and the rules that turn it into logits a sampler cannot leave.

use std::sync::Arc;
use std::time::{Duration, Instant};

use llguidance::toktrie::SimpleVob;
use llguidance::Matcher;

use super::vocab::{Vocab, VocabCell};
use super::{Format, FormatError};

/// Counters for `-v`: how long masks took, and how much of it ran beside the forward pass.
#[derive(Clone, Debug, Default)]
pub struct GuardStats {
    pub masks: usize,
    pub mask_time: Duration,
    /// Masks computed on another thread while the model evaluated.
    pub overlapped: usize,
}

impl GuardStats {
    /// The `-v` line: mask time per generated token and how much ran beside the model.
    pub fn report(&self, generated: usize) -> String {
        let ms = self.mask_time.as_secs_f64() * 1e3;
        format!(
            "output constraint: {} masks, {:.3} ms per token ({:.1} ms in all), {} of them computed during the forward pass",
            self.masks,
            if generated > 0 { ms / generated as f64 } else { 0.0 },
            ms,
            self.overlapped
        )
    }
}

/// The parser once the vocabulary is there.
struct Ready {
    vocab: Arc<Vocab>,
    matcher: Matcher,
}

/// One generation's constraint: the parser state after the tokens committed so far, and the
/// mask for the next token once computed. A guard made with [`Guard::deferred`] builds its
/// parser on first use (on the mask thread, during the prompt).
pub struct Guard {
    ready: Option<Ready>,
    pending: Option<(Arc<VocabCell>, Format)>,
    mask: Option<SimpleVob>,
    /// The model chose to end (its most likely token was an end token) where the text could
    /// not end yet: it ends as soon as it can.
    wants_end: bool,
    /// Compute masks on a thread of their own beside the forward pass. Worth it only where a
    /// core is free of the compute threads: on this 2-core machine, with ggml's two workers
    /// spinning between ops, a third thread cost 10% of SmolLM2's decode speed where computing
    /// the mask first cost 2% ([`spare_core`]).
    pub overlap: bool,
    pub stats: GuardStats,
}

/// Whether a core is left beside `compute_threads` busy ones (for the mask thread).
pub fn spare_core(compute_threads: usize) -> bool {
    std::thread::available_parallelism().map_or(1, usize::from) > compute_threads
}

impl Clone for Guard {
    fn clone(&self) -> Self {
        Guard {
            ready: self.ready.as_ref().map(|r| Ready {
                vocab: r.vocab.clone(),
                matcher: r.matcher.deep_clone(),
            }),
            pending: self.pending.clone(),
            mask: self.mask.clone(),
            wants_end: self.wants_end,
            overlap: self.overlap,
            stats: self.stats.clone(),
        }
    }
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn parser_for(vocab: &Vocab, format: &Format) -> Result<Matcher, FormatError> {
    let t0 = Instant::now();
    let parser = vocab
        .factory
        .create_parser(format.top_level())
        .map_err(|e| FormatError(e.to_string()))?;
    log::info!(
        "output constraint: {} compiled in {:.1} ms",
        format.describe(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    Ok(Matcher::new(Ok(parser)))
}

impl Guard {
    pub fn new(vocab: &Arc<Vocab>, format: &Format) -> Result<Guard, FormatError> {
        Ok(Guard {
            ready: Some(Ready {
                vocab: vocab.clone(),
                matcher: parser_for(vocab, format)?,
            }),
            pending: None,
            mask: None,
            wants_end: false,
            overlap: true,
            stats: GuardStats::default(),
        })
    }

    /// A guard whose parser is made when the vocabulary is ready (`format` was checked when
    /// it was read, so making it does not fail but for a bug, which ends generation).
    pub fn deferred(cell: &Arc<VocabCell>, format: &Format) -> Guard {
        Guard {
            ready: None,
            pending: Some((cell.clone(), format.clone())),
            mask: None,
            wants_end: false,
            overlap: true,
            stats: GuardStats::default(),
        }
    }

    fn ready(&mut self) -> &mut Ready {
        if self.ready.is_none() {
            let (cell, format) = self.pending.take().expect("a guard is ready or pending");
            let vocab = cell.get();
            let matcher = parser_for(&vocab, &format).unwrap_or_else(|e| {
                log::error!("the output constraint failed to compile: {e}");
                Matcher::new(Err(anyhow::anyhow!("{e}")))
            });
            self.ready = Some(Ready { vocab, matcher });
        }
        self.ready.as_mut().expect("made ready")
    }

    /// Computes the next token's mask unless it is known (a stopped or broken parser allows
    /// only end-of-generation).
    pub fn prepare(&mut self) {
        if self.mask.is_some() {
            return;
        }
        let r = self.ready();
        let t0 = Instant::now();
        let mask = match r.matcher.compute_mask_or_eos() {
            Ok(m) => m,
            Err(e) => {
                log::error!("the output constraint failed ({e}); ending generation");
                r.vocab.factory.tok_env().tok_trie().eos_token_set()
            }
        };
        self.stats.masks += 1;
        self.stats.mask_time += t0.elapsed();
        self.mask = Some(mask);
    }

    /// Whether the next token's mask is computed.
    pub fn is_prepared(&self) -> bool {
        self.mask.is_some()
    }

    /// Sets every token the constraint does not allow next to -inf (every end-of-generation
    /// token is allowed exactly when the grammar may end here). Where the model would end
    /// before the text is complete, generation goes on until it is, then ends: once the model
    /// has chosen to end, the first place the text may end allows only end tokens.
    pub fn apply(&mut self, logits: &mut [f32]) {
        self.prepare();
        let vocab = &self.ready.as_ref().expect("prepared").vocab;
        let mask = self.mask.as_ref().expect("prepared");
        // the end-of-generation tokens' logits, kept where the grammar may end (llguidance's
        // mask holds one end token: the vocabulary's first)
        let end = mask.is_allowed(vocab.eos());
        if !end && !self.wants_end {
            let top = crate::sampling::argmax(logits);
            self.wants_end = vocab.eog.contains(&top);
        }
        let eog: Vec<(usize, f32)> = vocab
            .eog
            .iter()
            .filter_map(|&id| Some((id as usize, *logits.get(id as usize)?)))
            .collect();
        let n = if end && self.wants_end {
            // only the end tokens (restored below)
            0
        } else {
            mask.len().min(logits.len())
        };
        // 32 tokens per mask word: most words are all-refused or all-allowed
        for (w, chunk) in mask.as_slice().iter().zip(logits[..n].chunks_mut(32)) {
            match *w {
                u32::MAX => {}
                0 => chunk.fill(f32::NEG_INFINITY),
                bits => {
                    for (b, l) in chunk.iter_mut().enumerate() {
                        if bits & (1 << b) == 0 {
                            *l = f32::NEG_INFINITY;
                        }
                    }
                }
            }
        }
        logits[n..].fill(f32::NEG_INFINITY);
        for (id, l) in eog {
            logits[id] = if end { l } else { f32::NEG_INFINITY };
        }
    }

    /// Whether `id` may come next.
    pub fn allows(&mut self, id: u32) -> bool {
        self.prepare();
        let vocab = &self.ready.as_ref().expect("prepared").vocab;
        let mask = self.mask.as_ref().expect("prepared");
        if vocab.eog.contains(&id) {
            return mask.is_allowed(vocab.eos());
        }
        (id as usize) < mask.len() && mask.is_allowed(id)
    }

    /// Records a generated token. End-of-generation tokens end the text and are not part of it.
    pub fn commit(&mut self, id: u32) {
        let r = self.ready();
        if r.vocab.eog.contains(&id) {
            return;
        }
        if let Err(e) = r.matcher.consume_token(id) {
            log::error!("the output constraint refused token {id}: {e}");
        }
        self.mask = None;
    }

    /// How many of `tokens` the constraint accepts in a row from here (drafts are cut there).
    pub fn valid_prefix(&mut self, tokens: &[u32]) -> usize {
        let r = self.ready();
        let ok = r.matcher.validate_tokens(tokens).unwrap_or(0);
        // an end-of-generation token the grammar allows is valid (and ends the draft)
        match tokens.get(ok) {
            Some(&id) if r.vocab.eog.contains(&id) && allows_end_after(r, &tokens[..ok]) => ok + 1,
            _ => ok,
        }
    }

    /// Whether the text so far is complete under the constraint (it may end here).
    pub fn is_complete(&mut self) -> bool {
        let m = &mut self.ready().matcher;
        m.is_stopped() && !m.is_error() || m.is_accepting().unwrap_or(false)
    }
}

fn allows_end_after(r: &mut Ready, prefix: &[u32]) -> bool {
    if prefix.is_empty() {
        return r.matcher.is_accepting().unwrap_or(false);
    }
    let mut m = r.matcher.deep_clone();
    m.consume_tokens(prefix).is_ok() && m.is_accepting().unwrap_or(false)
}
