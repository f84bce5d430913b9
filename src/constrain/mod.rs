//! Structured output: a JSON schema, a grammar (GBNF or Lark) or "any JSON object" that every
//! generated text satisfies. The constraint engine is llguidance (an Earley parser over a
//! derivative-based lexer, walking a token trie); this module gives it Ember's vocabulary and
//! turns its token masks into logits a sampler cannot leave.
//!
//! ```text
//! --json-schema / --grammar(-file) / --format json ─► Format (checked at the command line)
//! Tokenizer ─► Vocab (token trie, built once per model) ─► Guard::new(vocab, format)
//! each token: Guard::apply(logits) (mask) ─► sample ─► Guard::commit(id)
//! ```
//!
//! The mask for the next token depends only on the tokens committed so far, so the decode
//! loops compute it on another thread while the forward pass runs ([`Guard::prepare`] through
//! `Sampler::overlap`).

mod gbnf;

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{ApproximateTokEnv, SimpleVob, TokEnv, TokRxInfo, TokTrie};
use llguidance::{Matcher, ParserFactory};

use crate::tokenizer::Tokenizer;

pub use gbnf::{gbnf_to_lark, GbnfError};

/// What the output must be.
#[derive(Clone, Debug, PartialEq)]
pub enum Format {
    /// Any JSON object (`--format json`).
    AnyJson,
    /// A JSON schema.
    Schema(serde_json::Value),
    /// A grammar in llguidance's Lark syntax (GBNF is translated to it when read).
    Lark(String),
}

/// A schema or grammar that cannot be used, naming where it went wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct FormatError(pub String);

impl Format {
    /// A JSON schema's text; `origin` names it in errors (a file name, or `--json-schema`).
    pub fn schema(text: &str, origin: &str) -> Result<Format, FormatError> {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| FormatError(format!("{origin}: not valid JSON: {e}")))?;
        if !(v.is_object() || v.is_boolean()) {
            return Err(FormatError(format!(
                "{origin}: a JSON schema is an object (or true/false)"
            )));
        }
        let f = Format::Schema(v);
        let warnings = f
            .check()
            .map_err(|e| FormatError(format!("{origin}: {e}")))?;
        for w in warnings {
            log::warn!("{origin}: {w} (ignored: the output may not satisfy it)");
        }
        Ok(f)
    }

    /// A grammar's text: GBNF when `lark` is false and it has a `::=` rule, Lark otherwise.
    pub fn grammar(text: &str, origin: &str, lark: bool) -> Result<Format, FormatError> {
        let f = if !lark && text.contains("::=") {
            let lark = gbnf_to_lark(text).map_err(|e| FormatError(format!("{origin}: {e}")))?;
            Format::Lark(lark)
        } else {
            Format::Lark(text.to_string())
        };
        let warnings = f
            .check()
            .map_err(|e| FormatError(format!("{origin}: {e}")))?;
        for w in warnings {
            log::warn!("{origin}: {w} (ignored: the output may not satisfy it)");
        }
        Ok(f)
    }

    /// A grammar or schema file, by its extension: `.json` a schema, `.lark` Lark, anything
    /// else GBNF (or Lark when it has no `::=` rule).
    pub fn file(path: &Path) -> Result<Format, FormatError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| FormatError(format!("{}: {e}", path.display())))?;
        let origin = path.display().to_string();
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Format::schema(&text, &origin),
            Some("lark") => Format::grammar(&text, &origin, true),
            _ => Format::grammar(&text, &origin, false),
        }
    }

    /// A `format` value as the chat and the batch requests give it: `json`, a schema object,
    /// or a file (schema, GBNF or Lark).
    pub fn from_value(v: &serde_json::Value, origin: &str) -> Result<Format, FormatError> {
        match v {
            serde_json::Value::String(s) if s == "json" => Ok(Format::AnyJson),
            serde_json::Value::String(s) => Format::file(Path::new(s)),
            serde_json::Value::Object(_) | serde_json::Value::Bool(_) => {
                Format::schema(&v.to_string(), origin)
            }
            _ => Err(FormatError(format!(
                "{origin}: expected \"json\", a schema object or a file name"
            ))),
        }
    }

    /// The constraint a JSON request gives, if any: `format` (`"json"` or a schema, as Ollama
    /// takes it), `json_schema` (a schema), `grammar` (GBNF or Lark text) or OpenAI's
    /// `response_format` (`{"type": "json_object"}`, or `{"type": "json_schema", "json_schema":
    /// {"schema": ...}}`). At most one.
    pub fn from_request(
        obj: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Option<Format>, FormatError> {
        use serde_json::Value;
        let keys = ["format", "json_schema", "grammar", "response_format"];
        let given: Vec<&str> = keys
            .into_iter()
            .filter(|k| obj.get(*k).is_some_and(|v| !v.is_null()))
            .collect();
        let (key, v) = match given.as_slice() {
            [] => return Ok(None),
            [k] => (*k, &obj[*k]),
            _ => {
                return Err(FormatError(format!(
                    "give one of {}, not several",
                    given.join(", ")
                )))
            }
        };
        let f = match (key, v) {
            ("format", Value::String(s)) if s == "json" => Format::AnyJson,
            ("format", Value::Object(_)) | ("json_schema", Value::Object(_) | Value::Bool(_)) => {
                Format::schema(&v.to_string(), key)?
            }
            ("format", _) => {
                return Err(FormatError(
                    "'format' must be \"json\" or a JSON schema object".into(),
                ))
            }
            ("json_schema", _) => {
                return Err(FormatError("'json_schema' must be a schema object".into()))
            }
            ("grammar", Value::String(g)) => Format::grammar(g, "grammar", false)?,
            ("grammar", _) => return Err(FormatError("'grammar' must be a string".into())),
            _ => match v.get("type").and_then(Value::as_str) {
                Some("text") => return Ok(None),
                Some("json_object") => match v.get("schema") {
                    Some(s) => Format::schema(&s.to_string(), "response_format.schema")?,
                    None => Format::AnyJson,
                },
                Some("json_schema") => {
                    let s = v
                        .get("json_schema")
                        .and_then(|j| j.get("schema"))
                        .ok_or_else(|| {
                            FormatError("response_format: json_schema.schema is missing".into())
                        })?;
                    Format::schema(&s.to_string(), "response_format.json_schema.schema")?
                }
                _ => {
                    return Err(FormatError(
                        "response_format.type must be text, json_object or json_schema".into(),
                    ))
                }
            },
        };
        Ok(Some(f))
    }

    fn top_level(&self) -> TopLevelGrammar {
        match self {
            Format::AnyJson => TopLevelGrammar::from_json_schema(with_layout(
                serde_json::json!({"type": "object"}),
            )),
            Format::Schema(v) => TopLevelGrammar::from_json_schema(with_layout(v.clone())),
            Format::Lark(s) => TopLevelGrammar::from_lark(s.clone()),
        }
    }

    /// Compiles the format against a byte-level vocabulary, so that grammar and schema errors
    /// show before a model is loaded; returns llguidance's warnings (what it ignores).
    pub fn check(&self) -> Result<Vec<String>, String> {
        let env = ApproximateTokEnv::single_byte_env();
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| e.to_string())?;
        factory.quiet();
        let mut parser = factory
            .create_parser(self.top_level())
            .map_err(|e| e.to_string())?;
        Ok(parser.grammar_warnings())
    }

    /// A short description for logs.
    pub fn describe(&self) -> &'static str {
        match self {
            Format::AnyJson => "any JSON object",
            Format::Schema(_) => "a JSON schema",
            Format::Lark(_) => "a grammar",
        }
    }
}

/// Whitespace between JSON tokens as llama.cpp's schema grammars allow it: none, one space, or
/// a newline and up to 20 spaces or tabs of indentation (a model cannot pad forever). Keywords
/// llguidance does not implement (`uniqueItems`, unknown `format`s) are warned about and
/// ignored, as llama.cpp's converter ignores them. A schema that sets llguidance's own
/// `x-guidance` options keeps them instead.
const JSON_SPACE: &str = r"\x20|\x0A[\x20\x09]{0,20}";

fn with_layout(schema: serde_json::Value) -> serde_json::Value {
    let mut schema = match schema {
        serde_json::Value::Bool(true) => serde_json::json!({}),
        other => other,
    };
    if let Some(obj) = schema.as_object_mut() {
        obj.entry("x-guidance").or_insert_with(
            || serde_json::json!({"whitespace_pattern": JSON_SPACE, "lenient": true}),
        );
    }
    schema
}

/// A model's vocabulary as the constraint engine sees it: each token's bytes (special tokens
/// marked so no grammar text matches them) and the end-of-generation tokens.
pub struct Vocab {
    factory: ParserFactory,
    /// Every end-of-generation token id (the grammar's "end" allows them all).
    eog: Vec<u32>,
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

    fn eos(&self) -> u32 {
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
        if end && self.wants_end {
            for (i, l) in logits.iter_mut().enumerate() {
                if !vocab.eog.contains(&(i as u32)) {
                    *l = f32::NEG_INFINITY;
                }
            }
            return;
        }
        let eog: Vec<(usize, f32)> = vocab
            .eog
            .iter()
            .filter_map(|&id| Some((id as usize, *logits.get(id as usize)?)))
            .collect();
        // 32 tokens per mask word: most words are all-refused or all-allowed
        let n = mask.len().min(logits.len());
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

#[cfg(test)]
mod tests;
