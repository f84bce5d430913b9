//! The batch engine: many requests through the sequences of one session (continuous
//! batching). Each request takes a free sequence; its prompt is evaluated alone, in the
//! micro-batches it would have alone; then every decoding sequence advances one token per step,
//! all in one micro-batch ([`Session::decode_step`]). A finished request frees its sequence for
//! the next. A request's tokens, text and stop reason are those of a one-shot run with the same
//! settings, bit for bit: the session gives each sequence its lone logits, and each request has
//! its own sampler (seed), stop strings and length.
//!
//! Steps alternate between one prompt micro-batch (when a prompt waits) and one decode step
//! (when some sequence decodes), so new prompts start while others generate.
//!
//! **Shared prefixes.** A prompt's micro-batches that another sequence has already evaluated —
//! the same tokens, cut at the same places, so the very computation the prompt would do alone
//! — are not evaluated again: the sequence that holds them (a freed one, in place; or another,
//! by copying its cache rows) lends them. Only whole micro-batches before the prompt's last
//! one qualify (a shorter first micro-batch computes its rows in another shape), so this pays
//! for long shared heads: a document asked many questions, a long system prompt (lower `-ub`
//! to share shorter heads; a lone run must then use the same `-ub` to match).

use std::time::{Duration, Instant};

use crate::chat::reasoning::Splitter;
use crate::constrain::Guard;
use crate::sampling::{Sampler, SamplingParams};
use crate::tokenizer::Tokenizer;

use super::session::{EvalError, Session, Want};
use super::text::TextStream;
use super::{StopReason, Timings};

mod spec;

/// Prompt tokens that may be evaluated back to back, between two decode steps, when the
/// prompts are that short (a burst of chat requests: each starts without waiting for a decode
/// step per request before it).
const SHORT_PROMPTS: usize = 128;

/// One request, its prompt already tokens.
#[derive(Clone, Debug)]
pub struct Request {
    /// The caller's handle for it (results carry it back).
    pub index: usize,
    pub prompt: Vec<u32>,
    pub sampling: SamplingParams,
    /// Tokens to generate; negative: until end of generation or a full sequence.
    pub n_predict: i64,
    pub ignore_eos: bool,
    pub stop: Vec<String>,
    /// Control tokens shown as their text.
    pub special: bool,
    /// The output constraint (schema or grammar) its text must satisfy.
    pub guard: Option<Guard>,
    /// How the model's reasoning is kept apart from the text (chat requests to reasoning
    /// models).
    pub split: Option<Splitter>,
}

/// A request's result.
#[derive(Debug)]
pub struct Finished {
    pub index: usize,
    pub outcome: Result<Done, String>,
}

/// A request that ran to a stop.
#[derive(Debug)]
pub struct Done {
    pub text: String,
    pub tokens: Vec<u32>,
    pub stop: StopReason,
    /// A stop string ended it.
    pub stop_hit: bool,
    /// The text does not satisfy the request's output constraint (it ended first).
    pub incomplete: bool,
    /// The end of `text` that [`Batch::take_deltas`] has not handed out.
    pub tail: String,
    /// The reasoning kept apart from `text`, and its end not handed out as a delta.
    pub reasoning: String,
    pub reasoning_tail: String,
    pub timings: Timings,
}

/// What a request released since the batch last handed it out.
#[derive(Debug)]
pub struct Delta {
    pub index: usize,
    pub text: String,
    pub reasoning: String,
}

/// A request in a sequence.
struct Active {
    req: Request,
    sampler: Sampler,
    text: TextStream,
    tokens: Vec<u32>,
    /// Prompt tokens evaluated so far.
    prompt_done: usize,
    /// The token to evaluate next (decoding), once the prompt is done.
    pending: Option<u32>,
    start: Instant,
    first_at: Option<Instant>,
    timings: Timings,
    /// Admission order.
    admitted: u64,
    /// Text released since the batch last handed it out ([`Batch::take_deltas`]).
    delta: String,
    /// Reasoning likewise.
    reasoning_delta: String,
}

impl Active {
    fn new(mut req: Request) -> Active {
        let mut sampler = Sampler::new(req.sampling.clone());
        for &id in &req.prompt {
            sampler.accept(id);
        }
        sampler.set_guard(req.guard.take());
        Active {
            text: TextStream::new(req.special, req.stop.clone()).with_reasoning(req.split.take()),
            sampler,
            tokens: Vec::new(),
            prompt_done: 0,
            pending: None,
            start: Instant::now(),
            first_at: None,
            timings: Timings {
                prompt_tokens: req.prompt.len(),
                ..Timings::default()
            },
            admitted: 0,
            delta: String::new(),
            reasoning_delta: String::new(),
            req,
        }
    }

    fn length_reached(&self) -> bool {
        self.req.n_predict >= 0 && self.timings.generated as i64 >= self.req.n_predict
    }

    /// Given the logits after its last evaluated token: sample and hand out the next token as
    /// the one-shot decode loop does; `Some` when the request is done.
    fn advance(&mut self, tok: &Tokenizer, logits: &[f32], room: bool) -> Option<StopReason> {
        if self.length_reached() {
            return Some(StopReason::Length);
        }
        let id = self.sampler.sample(logits);
        self.sampler.commit(id);
        if !self.req.ignore_eos && tok.is_eog(id) {
            return Some(StopReason::Eog);
        }
        self.timings.generated += 1;
        self.tokens.push(id);
        let shown = self.text.push(tok, id);
        self.delta.push_str(&shown);
        self.reasoning_delta.push_str(self.text.take_reasoning());
        if self.text.stop_hit().is_some() {
            return Some(StopReason::Cancelled);
        }
        if self.first_at.is_none() {
            self.first_at = Some(Instant::now());
            self.timings.ttft = self.start.elapsed();
        }
        if self.length_reached() {
            return Some(StopReason::Length);
        }
        if !room {
            return Some(StopReason::ContextFull);
        }
        self.pending = Some(id);
        None
    }

    fn finish(mut self, stop: StopReason) -> Finished {
        self.timings.decode = self.first_at.map_or(Duration::ZERO, |f| f.elapsed());
        let mut tail = std::mem::take(&mut self.delta);
        tail.push_str(&self.text.finish());
        let mut reasoning_tail = std::mem::take(&mut self.reasoning_delta);
        reasoning_tail.push_str(self.text.take_reasoning());
        let reasoning = self.text.reasoning().to_string();
        let stop_hit = self.text.stop_hit().is_some();
        Finished {
            index: self.req.index,
            outcome: Ok(Done {
                tail,
                reasoning,
                reasoning_tail,
                stop_hit,
                incomplete: !stop_hit && !self.sampler.is_complete(),
                text: self.text.into_text(),
                tokens: self.tokens,
                stop,
                timings: self.timings,
            }),
        }
    }
}

/// Requests through the sequences of a session.
pub struct Batch<'a> {
    session: &'a mut Session,
    tok: &'a Tokenizer,
    slots: Vec<Option<Active>>,
    /// The last step evaluated a prompt micro-batch (the next decodes, if it can).
    last_was_prompt: bool,
    /// Prompt tokens evaluated since the last decode step: short prompts run back to back
    /// (up to [`SHORT_PROMPTS`] tokens) before the decoders get their step, so that a burst of
    /// short requests all start soon.
    prompt_run: usize,
    /// Per sequence, the prompt tokens its cache holds as a lone run computes them (the
    /// micro-batches evaluated; kept after its request finishes, until the next takes it).
    held: Vec<Vec<u32>>,
    /// Per idle sequence, every token its cache holds (the last request's prompt and the answer
    /// tokens evaluated), for continuations; empty while a request runs in it.
    history: Vec<Vec<u32>>,
    /// A request whose prompt extends a finished request's prompt and answer continues in that
    /// sequence from its cache ([`Batch::set_continuations`]).
    continuations: bool,
    /// Tokens evaluated in decode steps, and prompt tokens, so far.
    pub decoded: usize,
    pub prompted: usize,
    /// Prompt tokens another sequence lent (not evaluated again).
    pub shared: usize,
    /// Requests admitted so far.
    admitted: u64,
    /// Speculative decoding of a lone greedy request ([`Batch::set_speculation`]).
    spec: Option<spec::Spec>,
}

impl<'a> Batch<'a> {
    pub fn new(session: &'a mut Session, tok: &'a Tokenizer) -> Batch<'a> {
        let n = session.n_seq();
        Batch {
            session,
            tok,
            slots: (0..n).map(|_| None).collect(),
            last_was_prompt: false,
            prompt_run: 0,
            held: vec![Vec::new(); n],
            history: vec![Vec::new(); n],
            continuations: false,
            decoded: 0,
            prompted: 0,
            shared: 0,
            admitted: 0,
            spec: None,
        }
    }

    /// Continuations on: a request whose prompt starts with everything an idle sequence's
    /// cache holds (the previous request's prompt and answer: a chat's next turn) takes that
    /// sequence and evaluates only the rest, as the chat REPL does. Its answer is then the
    /// REPL's, not a lone run's of the whole conversation (whose prompt micro-batches are cut
    /// elsewhere), so this is off for `ember batch` and on for the server.
    pub fn set_continuations(&mut self, on: bool) {
        self.continuations = on;
    }

    /// Takes a finished request out of its sequence, remembering what the cache holds.
    fn retire(&mut self, slot: usize, stop: StopReason) -> Option<Finished> {
        let a = self.slots[slot].take()?;
        let n = self.session.seq_n_past(slot) as usize;
        let mut h: Vec<u32> = a.req.prompt[..a.prompt_done].to_vec();
        if a.prompt_done == a.req.prompt.len() {
            h.extend_from_slice(&a.tokens);
        }
        h.truncate(n);
        self.history[slot] = if h.len() == n { h } else { Vec::new() };
        Some(a.finish(stop))
    }

    /// The idle sequence whose cache `prompt` continues, with how many tokens it holds.
    fn continuation(&self, prompt: &[u32]) -> Option<(usize, usize)> {
        if !self.continuations {
            return None;
        }
        (0..self.slots.len())
            .filter(|&s| self.slots[s].is_none())
            .map(|s| (s, self.history[s].len()))
            .filter(|&(s, n)| n > 0 && prompt.len() > n && prompt.starts_with(&self.history[s]))
            .max_by_key(|&(_, n)| n)
    }

    /// Cells of each sequence: the longest prompt plus generation a request may have.
    pub fn seq_cells(&self) -> u32 {
        self.session.n_ctx()
    }

    pub fn has_free_slot(&self) -> bool {
        self.slots.iter().any(Option::is_none)
    }

    /// Requests in sequences.
    pub fn active(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Give `req` a free sequence. A request that cannot run (empty prompt, longer than a
    /// sequence) is finished at once with its error; `None` when it was admitted.
    ///
    /// # Panics
    /// When no sequence is free ([`has_free_slot`](Self::has_free_slot)).
    pub fn admit(&mut self, req: Request) -> Option<Finished> {
        let cells = self.session.n_ctx() as usize;
        let error = if req.prompt.is_empty() {
            Some("the prompt is empty".to_string())
        } else if req.prompt.len() > cells {
            Some(format!(
                "the prompt has {} tokens, more than a sequence's {cells} (raise -c or lower -np)",
                req.prompt.len()
            ))
        } else {
            None
        };
        if let Some(e) = error {
            return Some(Finished {
                index: req.index,
                outcome: Err(e),
            });
        }
        if let Some((slot, n)) = self.continuation(&req.prompt) {
            log::debug!(
                "request {} continues sequence {slot}: {n} of its {} prompt tokens from the cache",
                req.index,
                req.prompt.len()
            );
            self.history[slot].clear();
            let kept = self.held[slot].len().min(n);
            self.held[slot].truncate(kept);
            self.shared += n;
            let mut a = Active::new(req);
            a.prompt_done = n;
            a.admitted = self.admitted;
            self.admitted += 1;
            self.slots[slot] = Some(a);
            return None;
        }
        let (slot, lender, n) = self.place(&req.prompt);
        self.history[slot].clear();
        let mut done = 0;
        if n > 0 {
            let lent = match lender {
                None => self.session.truncate_seq(slot, n as u32) as usize,
                Some(from) => match self.session.copy_prefix(from, slot, n as u32) {
                    Ok(()) => n,
                    Err(_) => 0,
                },
            };
            if lent == n {
                done = n;
                self.shared += n;
            }
        }
        if done == 0 {
            self.session.clear_seq(slot);
        }
        self.held[slot] = req.prompt[..done].to_vec();
        let mut a = Active::new(req);
        a.prompt_done = done;
        a.admitted = self.admitted;
        self.admitted += 1;
        self.slots[slot] = Some(a);
        None
    }

    /// Where a prompt goes: a free sequence, the one that lends it tokens (itself: `None`, or
    /// another), and how many. The free sequence holding the most of it is taken; another
    /// lends instead when it holds more and rows can be copied.
    fn place(&self, prompt: &[u32]) -> (usize, Option<usize>, usize) {
        let ub = self.session.params().n_ubatch.max(1) as usize;
        let lendable = |held: &[u32]| {
            let common = held.iter().zip(prompt).take_while(|(a, b)| a == b).count();
            // whole micro-batches, and never the prompt's last one (its logits are needed)
            (common / ub * ub).min((prompt.len() - 1) / ub * ub)
        };
        let free = (0..self.slots.len()).filter(|&s| self.slots[s].is_none());
        let (slot, own) = free
            .map(|s| (s, lendable(&self.held[s])))
            .max_by_key(|&(s, n)| (n, std::cmp::Reverse(s)))
            .expect("admit needs a free sequence");
        let other = (0..self.slots.len())
            .filter(|&s| s != slot)
            .map(|s| (s, lendable(&self.held[s])))
            .max_by_key(|&(s, n)| (n, std::cmp::Reverse(s)));
        match other {
            Some((from, n)) if n > own && self.session.can_copy_prefix() => (slot, Some(from), n),
            _ => (slot, None, own),
        }
    }

    /// One step: a prompt micro-batch or a decode step over every decoding sequence. Returns
    /// the requests that finished.
    pub fn step(&mut self) -> Result<Vec<Finished>, EvalError> {
        // the prompt admitted first (a freed sequence's next prompt must not overtake the
        // others waiting)
        let prompting = (0..self.slots.len())
            .filter_map(|s| {
                let a = self.slots[s].as_ref()?;
                a.pending.is_none().then_some((a.admitted, s))
            })
            .min()
            .map(|(_, s)| s);
        let decoding = self.slots.iter().flatten().any(|a| a.pending.is_some());
        let mut done = Vec::new();
        match prompting {
            Some(slot)
                if !(decoding && self.last_was_prompt)
                    || self.prompt_run + self.prompt_left(slot) <= SHORT_PROMPTS =>
            {
                self.last_was_prompt = true;
                self.prompt_run += self
                    .prompt_left(slot)
                    .min(self.session.params().n_ubatch as usize);
                self.prompt_step(slot, &mut done)?;
            }
            _ if decoding => {
                self.last_was_prompt = false;
                self.prompt_run = 0;
                self.decode_step(&mut done)?;
            }
            _ => {}
        }
        Ok(done)
    }

    /// Prompt tokens sequence `slot` has still to evaluate.
    fn prompt_left(&self, slot: usize) -> usize {
        self.slots[slot]
            .as_ref()
            .map_or(0, |a| a.req.prompt.len() - a.prompt_done)
    }

    /// The next micro-batch of sequence `slot`'s prompt (cut where a lone run cuts it); after
    /// the last one, its first token.
    fn prompt_step(&mut self, slot: usize, done: &mut Vec<Finished>) -> Result<(), EvalError> {
        let ub = self.session.params().n_ubatch.max(1) as usize;
        let a = self.slots[slot].as_mut().expect("a prompting sequence");
        let start = a.prompt_done;
        let end = (start + ub).min(a.req.prompt.len());
        let room =
            (self.session.seq_n_past(slot) as usize + end - start) < self.session.n_ctx() as usize;
        let logits = self
            .session
            .eval_seq(slot, &a.req.prompt[start..end], Want::Last)?;
        a.prompt_done = end;
        self.held[slot].extend_from_slice(&a.req.prompt[start..end]);
        self.prompted += end - start;
        if end < a.req.prompt.len() {
            return Ok(());
        }
        a.timings.prompt = a.start.elapsed();
        if let Some(stop) = a.advance(self.tok, logits, room) {
            done.extend(self.retire(slot, stop));
        }
        Ok(())
    }

    /// One token of every decoding sequence, in one micro-batch.
    fn decode_step(&mut self, done: &mut Vec<Finished>) -> Result<(), EvalError> {
        if let Some(slot) = self.lone_speculator() {
            return self.spec_step(slot, done);
        }
        let steps: Vec<(usize, u32)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(slot, a)| a.as_ref().and_then(|a| a.pending).map(|t| (slot, t)))
            .collect();
        let n_vocab = self.session.model().hp.n_vocab as usize;
        let logits = self.session.decode_step(&steps)?.to_vec();
        self.decoded += steps.len();
        for (k, &(slot, _)) in steps.iter().enumerate() {
            let room = self.session.seq_n_past(slot) < self.session.n_ctx();
            let a = self.slots[slot].as_mut().expect("a decoding sequence");
            a.pending = None;
            let l = &logits[k * n_vocab..(k + 1) * n_vocab];
            if let Some(stop) = a.advance(self.tok, l, room) {
                done.extend(self.retire(slot, stop));
            }
        }
        Ok(())
    }

    /// The text each request in a sequence released since the last call, as (index, text),
    /// for streaming; a finished request's last text is its [`Done::tail`].
    pub fn take_deltas(&mut self) -> Vec<Delta> {
        self.slots
            .iter_mut()
            .flatten()
            .filter(|a| !a.delta.is_empty() || !a.reasoning_delta.is_empty())
            .map(|a| Delta {
                index: a.req.index,
                text: std::mem::take(&mut a.delta),
                reasoning: std::mem::take(&mut a.reasoning_delta),
            })
            .collect()
    }

    /// Stops the request with this index (its client went away, or its time ran out) and frees
    /// its sequence: it finishes as cancelled with what it generated so far. `None` when no
    /// sequence holds it.
    pub fn cancel(&mut self, index: usize) -> Option<Finished> {
        let slot = self
            .slots
            .iter()
            .position(|a| a.as_ref().is_some_and(|a| a.req.index == index))?;
        self.retire(slot, StopReason::Cancelled)
    }

    /// The indices of the requests in sequences.
    pub fn active_indices(&self) -> Vec<usize> {
        self.slots.iter().flatten().map(|a| a.req.index).collect()
    }

    /// Stop every request in a sequence (an interrupt): each finishes as cancelled with what
    /// it generated so far.
    pub fn cancel_all(&mut self) -> Vec<Finished> {
        self.slots
            .iter_mut()
            .filter_map(Option::take)
            .map(|a| a.finish(StopReason::Cancelled))
            .collect()
    }
}
