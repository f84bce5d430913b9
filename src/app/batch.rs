//! `ember batch`: requests in (JSONL, or plain lines with `--lines`), one JSONL result per
//! request out, through the batch engine (`generate::batch`). Input is read as sequences free
//! up and results are written as they complete (in input order unless `--unordered`), so any
//! number of lines streams through in flat memory. A bad line gets an error result and the
//! others still run; the exit code says whether all succeeded.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::time::Instant;

use anyhow::{anyhow, Context as _, Result};
use serde_json::{json, Map, Value};

use crate::chat::{Format, Message};
use crate::cli::args::BatchArgs;
use crate::cli::config::{output_format, sampling_params, ContextSize, ModelConfig, UsageError};
use crate::generate::batch::{Batch, Finished, Request};
use crate::sampling::SamplingParams;
use crate::tokenizer::Tokenizer;

use super::load::{self, Loaded};
use super::output::stop_reason;
use super::signals;

/// The total context of a batch when `-c` is not given: shared by the sequences.
pub const BATCH_CTX: u32 = 8192;

/// Sequences when `-np` is not given: eight per core (decoding is memory-bound, so more
/// sequences cost little until the cores are busy, and the decode op's 512-bit kernels take
/// 16 columns at once), 4 to 16, each with at least 512 cells. (2 cores, Qwen2.5 0.5B, 64
/// prompts of about 60 tokens, 64 tokens each: 16 sequences 32–34 s, 8 sequences 35.6 s.)
pub fn default_parallel(n_ctx: u32, cores: usize) -> u32 {
    let by_cores = (8 * cores as u32).clamp(4, 16);
    by_cores.min((n_ctx / 512).max(1))
}

/// What a request may say, and what it gets when it does not.
struct Defaults {
    sampling: SamplingParams,
    n_predict: i64,
    stop: Vec<String>,
    ignore_eos: bool,
    special: bool,
    parse_special: bool,
    /// `--lines`: plain text lines; with `--chat` (Some) each a user message.
    lines: Option<Option<Format>>,
    system_prompt: Option<String>,
    /// How `messages` are rendered.
    format: Format,
    /// The output constraint of requests that give none.
    constraint: Option<crate::constrain::Format>,
}

pub fn run(a: &BatchArgs) -> Result<()> {
    let n_ctx = ContextSize::exactly(a.model.ctx_size.unwrap_or(BATCH_CTX));
    let cfg = ModelConfig::from_args(&a.model, n_ctx)?;
    if a.parallel == Some(0) {
        return Err(UsageError("--parallel must be at least 1".into()).into());
    }
    let input: Box<dyn BufRead> = match &a.file {
        Some(f) => Box::new(BufReader::new(
            std::fs::File::open(f).with_context(|| format!("reading {}", f.display()))?,
        )),
        None => Box::new(BufReader::new(std::io::stdin())),
    };
    let total = match &a.file {
        Some(f) => count_lines(f).ok(),
        None => None,
    };
    signals::install();
    let loaded = load::load(&cfg)?;
    let total_ctx = cfg.n_ctx.resolve(loaded.model.hp.n_ctx_train);
    let n_seq = a
        .parallel
        .unwrap_or_else(|| default_parallel(total_ctx, cfg.n_threads));
    let invariant = a.invariant == "on";
    let mut session = load::session_seqs(&loaded, &cfg, n_seq, invariant)?;
    log::info!(
        "batch: {n_seq} sequences of {} cells each (-c {total_ctx} shared; -np sets the count); batch invariance {}",
        session.n_ctx(),
        a.invariant
    );
    let reasoning = a.reasoning.template_vars();
    let format = super::front::chat_format(&loaded, a.chat_template.as_deref(), &reasoning)?;
    let lines_format = if a.chat {
        Some(Some(super::front::chat_format(
            &loaded,
            a.chat_template.as_deref(),
            &reasoning,
        )?))
    } else if a.lines {
        Some(None)
    } else {
        None
    };
    let defaults = Defaults {
        sampling: sampling_params(&a.sampling),
        n_predict: a.n_predict,
        stop: a.stop.clone(),
        ignore_eos: a.ignore_eos,
        special: a.special,
        parse_special: !a.no_parse_special,
        lines: lines_format,
        system_prompt: a.system_prompt.clone(),
        format,
        constraint: output_format(&a.format)?,
    };
    let tok = &loaded.tokenizer;
    let mut batch = Batch::new(&mut session, tok);
    let stdout = std::io::stdout();
    let mut out = Results::new(stdout.lock(), a.unordered);
    let mut progress = Progress::new(total);
    let mut lines = input.lines();
    let (mut eof, mut lineno, mut next) = (false, 0usize, 0usize);
    loop {
        if let Some(i) = signals::received() {
            for f in batch.cancel_all() {
                out.finish(f, true)?;
            }
            out.flush_all()?;
            progress.clear();
            return Err(i.into());
        }
        while !eof && batch.has_free_slot() {
            let Some(line) = lines.next() else {
                eof = true;
                break;
            };
            let line = line.context("reading the requests")?;
            lineno += 1;
            if line.trim().is_empty() {
                continue;
            }
            let index = next;
            next += 1;
            let (id, req) = parse_request(&line, lineno, index, &defaults, &loaded);
            out.ids.insert(index, id);
            match req {
                Ok(req) => {
                    if let Some(f) = batch.admit(req) {
                        out.finish(f, false)?;
                    }
                }
                Err(e) => out.error(index, e)?,
            }
        }
        if batch.active() == 0 {
            if eof {
                break;
            }
            continue;
        }
        for f in batch.step()? {
            out.finish(f, false)?;
        }
        progress.show(out.done, batch.decoded + batch.prompted);
    }
    out.flush_all()?;
    progress.clear();
    log::info!(
        "batch: {} requests ({} failed), {} prompt tokens evaluated ({} more shared between sequences), {} generated, in {:.1} s",
        out.done,
        out.failed,
        batch.prompted,
        batch.shared,
        batch.decoded,
        progress.start.elapsed().as_secs_f64()
    );
    if out.failed > 0 {
        return Err(anyhow!("{} of {} requests failed", out.failed, out.done));
    }
    Ok(())
}

/// Non-blank lines of a file (the total for the progress bar).
fn count_lines(path: &std::path::Path) -> std::io::Result<usize> {
    let f = BufReader::new(std::fs::File::open(path)?);
    let mut n = 0;
    for l in f.lines() {
        if !l?.trim().is_empty() {
            n += 1;
        }
    }
    Ok(n)
}

/// Fields a JSONL request may have.
const FIELDS: &[&str] = &[
    "id",
    "prompt",
    "messages",
    "n_predict",
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "repeat_penalty",
    "seed",
    "stop",
    "format",
    "json_schema",
    "grammar",
    "response_format",
];

/// The request on line `lineno`: its id (the line number when it has none) and the request,
/// or what is wrong with it.
fn parse_request(
    line: &str,
    lineno: usize,
    index: usize,
    d: &Defaults,
    loaded: &Loaded,
) -> (Value, Result<Request, String>) {
    let tok = &loaded.tokenizer;
    let line_id = json!(lineno);
    let base = Request {
        index,
        prompt: Vec::new(),
        sampling: d.sampling.clone(),
        n_predict: d.n_predict,
        ignore_eos: d.ignore_eos,
        stop: d.stop.clone(),
        special: d.special,
        guard: None,
        split: None,
    };
    let with_guard = |r: Request, f: Option<&crate::constrain::Format>| {
        Ok(Request {
            guard: f.map(|f| loaded.guard(f, usize::MAX)),
            ..r
        })
    };
    if let Some(chat) = &d.lines {
        let text = match chat {
            Some(f) => render(
                f,
                d.system_prompt.as_deref(),
                vec![Message::new("user", line)],
            ),
            None => Ok(line.to_string()),
        };
        let req = text
            .map(|t| Request {
                prompt: encode(tok, &t, d.parse_special, chat.is_some()),
                split: chat
                    .as_ref()
                    .filter(|_| !d.special)
                    .and_then(|f| f.reasoning_splitter(&t)),
                ..base
            })
            .and_then(|r| with_guard(r, d.constraint.as_ref()));
        return (line_id, req);
    }
    let obj: Map<String, Value> = match serde_json::from_str(line) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return (line_id, Err("a request must be a JSON object".into())),
        Err(e) => return (line_id, Err(format!("not JSON: {e}"))),
    };
    let id = obj.get("id").cloned().unwrap_or(line_id);
    let constraint = match crate::constrain::Format::from_request(&obj) {
        Ok(c) => c.or_else(|| d.constraint.clone()),
        Err(e) => return (id, Err(e.to_string())),
    };
    let req = request(&obj, base, d, tok).and_then(|r| with_guard(r, constraint.as_ref()));
    (id, req)
}

fn request(
    obj: &Map<String, Value>,
    mut r: Request,
    d: &Defaults,
    tok: &Tokenizer,
) -> Result<Request, String> {
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "unknown field '{k}' (known: {})",
            FIELDS.join(", ")
        ));
    }
    let num = |k: &str| -> Result<Option<f64>, String> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(_) => Err(format!("'{k}' must be a number")),
        }
    };
    let int = |k: &str| -> Result<Option<i64>, String> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) if n.is_i64() => Ok(n.as_i64()),
            Some(_) => Err(format!("'{k}' must be an integer")),
        }
    };
    if let Some(n) = int("n_predict")? {
        r.n_predict = n;
    }
    if let Some(t) = num("temperature")? {
        r.sampling.temp = t as f32;
    }
    if let Some(k) = int("top_k")? {
        r.sampling.top_k = i32::try_from(k).map_err(|_| "'top_k' is out of range")?;
    }
    if let Some(p) = num("top_p")? {
        r.sampling.top_p = p as f32;
    }
    if let Some(p) = num("min_p")? {
        r.sampling.min_p = p as f32;
    }
    if let Some(p) = num("repeat_penalty")? {
        r.sampling.repeat_penalty = p as f32;
    }
    if let Some(s) = int("seed")? {
        r.sampling.seed = u64::try_from(s).map_err(|_| "'seed' must not be negative")?;
    }
    match obj.get("stop") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => r.stop = vec![s.clone()],
        Some(Value::Array(a)) => {
            r.stop = a
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or("'stop' must be a string or a list of strings")?;
        }
        Some(_) => return Err("'stop' must be a string or a list of strings".into()),
    }
    let text = match (obj.get("prompt"), obj.get("messages")) {
        (Some(_), Some(_)) => return Err("give 'prompt' or 'messages', not both".into()),
        (Some(Value::String(p)), None) => {
            r.prompt = encode(tok, p, d.parse_special, false);
            return Ok(r);
        }
        (Some(_), None) => return Err("'prompt' must be a string".into()),
        (None, Some(Value::Array(m))) => {
            let msgs = m
                .iter()
                .map(|v| {
                    let role = v.get("role").and_then(Value::as_str);
                    let content = v.get("content").and_then(Value::as_str);
                    match (role, content) {
                        (Some(r), Some(c)) => Ok(Message::new(r, c)),
                        _ => Err("each message needs a string 'role' and 'content'".to_string()),
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            if msgs.is_empty() {
                return Err("'messages' is empty".into());
            }
            render(&d.format, None, msgs)?
        }
        (None, Some(_)) => return Err("'messages' must be a list".into()),
        (None, None) => return Err("a request needs 'prompt' or 'messages'".into()),
    };
    r.prompt = encode(tok, &text, d.parse_special, true);
    if !d.special {
        r.split = d.format.reasoning_splitter(&text);
    }
    Ok(r)
}

/// Messages rendered by the chat format, as the one-shot `--chat` renders them.
pub(crate) fn render(
    format: &Format,
    system: Option<&str>,
    msgs: Vec<Message>,
) -> Result<String, String> {
    let mut all: Vec<Message> = system
        .filter(|s| !s.is_empty())
        .map(|s| Message::new("system", s))
        .into_iter()
        .collect();
    all.extend(msgs);
    match format {
        Format::Template(t) => t
            .render(&all, true)
            .map_err(|e| format!("the chat template: {e}")),
        Format::Raw => Ok(all.iter().map(|m| m.content.as_str()).collect()),
    }
}

/// Prompt text to tokens as a one-shot run makes them (BOS where the vocabulary adds one, not
/// twice after a template that writes it).
pub(crate) fn encode(
    tok: &Tokenizer,
    text: &str,
    parse_special: bool,
    templated: bool,
) -> Vec<u32> {
    let mut ids = tok.encode(text, true, parse_special);
    if templated && ids.len() >= 2 && tok.bos() == Some(ids[0]) && ids[1] == ids[0] {
        ids.remove(0);
    }
    ids
}

/// Results on stdout: in input order (held until those before are written) or as they come.
struct Results<W: Write> {
    out: W,
    unordered: bool,
    /// Each request's id, until its result is written.
    ids: HashMap<usize, Value>,
    held: BTreeMap<usize, String>,
    next: usize,
    done: usize,
    failed: usize,
}

impl<W: Write> Results<W> {
    fn new(out: W, unordered: bool) -> Self {
        Results {
            out,
            unordered,
            ids: HashMap::new(),
            held: BTreeMap::new(),
            next: 0,
            done: 0,
            failed: 0,
        }
    }

    /// A request's result (`interrupted`: a signal stopped it).
    fn finish(&mut self, f: Finished, interrupted: bool) -> Result<()> {
        match f.outcome {
            Err(e) => self.error(f.index, e),
            Ok(d) => {
                let id = self.ids.remove(&f.index).unwrap_or(Value::Null);
                let t = &d.timings;
                let ms = |x: std::time::Duration| x.as_secs_f64() * 1e3;
                let gen_s = t.decode.as_secs_f64();
                let mut v = json!({
                    "id": id,
                    "text": d.text,
                    "stop_reason": stop_reason(d.stop, d.stop_hit, interrupted),
                    "complete": !d.incomplete,
                    "timings": {
                        "prompt_tokens": t.prompt_tokens,
                        "prompt_ms": ms(t.prompt),
                        "ttft_ms": ms(t.ttft),
                        "gen_tokens": t.generated,
                        "gen_ms": ms(t.decode),
                        "gen_tps": if gen_s > 0.0 { t.generated.saturating_sub(1) as f64 / gen_s } else { 0.0 },
                    },
                });
                if !d.reasoning.is_empty() {
                    v["reasoning"] = d.reasoning.into();
                }
                self.done += 1;
                self.put(f.index, v.to_string())
            }
        }
    }

    fn error(&mut self, index: usize, e: String) -> Result<()> {
        let id = self.ids.remove(&index).unwrap_or(Value::Null);
        self.done += 1;
        self.failed += 1;
        self.put(index, json!({"id": id, "error": e}).to_string())
    }

    fn put(&mut self, index: usize, line: String) -> Result<()> {
        if self.unordered {
            writeln!(self.out, "{line}")?;
            return Ok(self.out.flush()?);
        }
        self.held.insert(index, line);
        while let Some(line) = self.held.remove(&self.next) {
            writeln!(self.out, "{line}")?;
            self.next += 1;
        }
        Ok(self.out.flush()?)
    }

    /// Write whatever is held (an interrupt: the results finished so far, in order).
    fn flush_all(&mut self) -> Result<()> {
        for line in std::mem::take(&mut self.held).into_values() {
            writeln!(self.out, "{line}")?;
        }
        Ok(self.out.flush()?)
    }
}

/// A progress line on stderr when it is a terminal: done / total, tokens per second, ETA.
struct Progress {
    on: bool,
    total: Option<usize>,
    start: Instant,
    last: Option<Instant>,
}

impl Progress {
    fn new(total: Option<usize>) -> Self {
        Progress {
            on: std::io::stderr().is_terminal(),
            total,
            start: Instant::now(),
            last: None,
        }
    }

    fn show(&mut self, done: usize, tokens: usize) {
        if !self.on || self.last.is_some_and(|l| l.elapsed().as_millis() < 200) {
            return;
        }
        self.last = Some(Instant::now());
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        let rate = tokens as f64 / secs;
        let line = match self.total {
            Some(total) if total > 0 => {
                let frac = done as f64 / total as f64;
                let width = 30;
                let filled = (frac * width as f64) as usize;
                let eta = if done > 0 {
                    format!("{:.0} s", secs / frac - secs)
                } else {
                    "?".into()
                };
                format!(
                    "[{}{}] {done}/{total} | {rate:.1} tokens/s | ETA {eta}",
                    "#".repeat(filled),
                    " ".repeat(width - filled)
                )
            }
            _ => format!("{done} done | {rate:.1} tokens/s"),
        };
        eprint!("\r\x1b[2K{line}");
    }

    fn clear(&self) {
        if self.on && self.last.is_some() {
            eprint!("\r\x1b[2K");
        }
    }
}
