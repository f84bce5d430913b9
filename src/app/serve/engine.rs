//! The engine thread: it owns the model, the session of `-np` sequences and the batch engine
//! (ggml's objects stay on one thread), takes requests from the HTTP side over a channel, and
//! sends each request's events back over that request's own channel. Requests wait in a queue
//! until a sequence is free; a request whose channel closed (its client went away) or whose time
//! ran out is cancelled and frees its sequence at the next step.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::mpsc::UnboundedSender;

use crate::chat::{Format, Message};
use crate::generate::batch::{Batch, Finished, Request};
use crate::generate::StopReason;
use crate::sampling::SamplingParams;

use super::api::{ApiError, JobSpec, Kind, Usage};
use crate::app::load::Loaded;

/// What the HTTP side asks of the engine.
pub enum Command {
    Submit(Box<Submit>),
    /// Stop taking requests, end those in flight, return.
    Shutdown,
}

pub struct Submit {
    pub spec: JobSpec,
    pub events: UnboundedSender<Event>,
    /// Received at; `--timeout` counts from here.
    pub at: Instant,
}

/// What a request hears back, in this order: `Accepted` or `Failed`; then `Delta`s; then `Done`.
#[derive(Debug)]
pub enum Event {
    /// The prompt is tokenized and the request queued.
    Accepted {
        prompt_tokens: usize,
    },
    Failed(ApiError),
    /// Text and reasoning released since the last event (streaming).
    Delta {
        text: String,
        reasoning: String,
    },
    Done(Done),
}

#[derive(Debug)]
pub struct Done {
    /// The whole text.
    pub text: String,
    /// The end of it not sent as a `Delta`.
    pub tail: String,
    /// The model's reasoning kept apart from `text`, and its end not sent as a `Delta`.
    pub reasoning: String,
    pub reasoning_tail: String,
    pub finish_reason: &'static str,
    pub usage: Usage,
    /// The constraint (response_format) was not complete when it ended.
    pub incomplete: bool,
}

/// Settings the engine applies to every request.
pub struct Settings {
    pub sampling: SamplingParams,
    pub n_predict: i64,
    pub timeout: Option<Duration>,
    /// How chat messages become a prompt.
    pub format: Format,
    pub threads: usize,
}

struct Job {
    events: UnboundedSender<Event>,
    deadline: Option<Instant>,
    prompt_tokens: usize,
}

/// State shared with the HTTP side.
#[derive(Default)]
pub struct Shared {
    /// The model is loaded and requests are served.
    pub ready: AtomicBool,
    /// Requests submitted and not yet done (queued or in a sequence).
    pub pending: AtomicUsize,
}

/// Runs until `Shutdown` or until every sender is gone.
pub fn run(
    loaded: &Loaded,
    batch: &mut Batch,
    settings: &Settings,
    rx: &Receiver<Command>,
    shared: &Shared,
) -> Result<()> {
    let mut queue: VecDeque<(usize, Request)> = VecDeque::new();
    let mut jobs: HashMap<usize, Job> = HashMap::new();
    let mut next = 0usize;
    let mut closing = false;
    loop {
        // take what arrived; wait for it only when there is nothing to do
        loop {
            let idle = batch.active() == 0 && queue.is_empty();
            let cmd = if idle && !closing {
                match rx.recv_timeout(Duration::from_millis(500)) {
                    Ok(c) => c,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return Ok(()),
                }
            } else {
                match rx.try_recv() {
                    Ok(c) => c,
                    Err(_) => break,
                }
            };
            match cmd {
                Command::Shutdown => closing = true,
                Command::Submit(s) if closing => {
                    let _ = s.events.send(Event::Failed(ApiError::new(
                        503,
                        "server_error",
                        "the server is shutting down",
                    )));
                    shared.pending.fetch_sub(1, Ordering::SeqCst);
                }
                Command::Submit(s) => match request(loaded, settings, &s.spec, next) {
                    Ok(req) => {
                        let _ = s.events.send(Event::Accepted {
                            prompt_tokens: req.prompt.len(),
                        });
                        jobs.insert(
                            next,
                            Job {
                                events: s.events,
                                deadline: settings.timeout.map(|t| s.at + t),
                                prompt_tokens: req.prompt.len(),
                            },
                        );
                        queue.push_back((next, req));
                        next += 1;
                    }
                    Err(e) => {
                        let _ = s.events.send(Event::Failed(e));
                        shared.pending.fetch_sub(1, Ordering::SeqCst);
                    }
                },
            }
        }
        let now = Instant::now();
        let gone = |j: &Job| j.events.is_closed() || j.deadline.is_some_and(|d| now >= d);
        // queued requests whose clients left, or everything when closing
        queue.retain(|(i, _)| {
            let drop = closing || jobs.get(i).is_none_or(gone);
            if drop {
                if let Some(j) = jobs.remove(i) {
                    finish_job(&j);
                    shared.pending.fetch_sub(1, Ordering::SeqCst);
                }
            }
            !drop
        });
        for i in batch.active_indices() {
            if closing || jobs.get(&i).is_none_or(gone) {
                if let Some(f) = batch.cancel(i) {
                    deliver(f, &mut jobs, shared);
                }
            }
        }
        if closing && batch.active() == 0 {
            return Ok(());
        }
        while batch.has_free_slot() {
            let Some((_, req)) = queue.pop_front() else {
                break;
            };
            if let Some(f) = batch.admit(req) {
                deliver(f, &mut jobs, shared);
            }
        }
        if batch.active() == 0 {
            continue;
        }
        let finished = batch.step()?;
        for d in batch.take_deltas() {
            if let Some(j) = jobs.get(&d.index) {
                let _ = j.events.send(Event::Delta {
                    text: d.text,
                    reasoning: d.reasoning,
                });
            }
        }
        for f in finished {
            deliver(f, &mut jobs, shared);
        }
    }
}

/// Sends a finished request its `Done` (or failure) and forgets it.
fn deliver(f: Finished, jobs: &mut HashMap<usize, Job>, shared: &Shared) {
    let Some(j) = jobs.remove(&f.index) else {
        return;
    };
    shared.pending.fetch_sub(1, Ordering::SeqCst);
    match f.outcome {
        Err(e) => {
            let _ = j.events.send(Event::Failed(ApiError::bad(e, None)));
        }
        Ok(d) => {
            let finish_reason = match d.stop {
                StopReason::Eog => "stop",
                StopReason::Cancelled if d.stop_hit => "stop",
                _ => "length",
            };
            let _ = j.events.send(Event::Done(Done {
                usage: Usage {
                    prompt: j.prompt_tokens,
                    completion: d.tokens.len(),
                },
                text: d.text,
                tail: d.tail,
                reasoning: d.reasoning,
                reasoning_tail: d.reasoning_tail,
                finish_reason,
                incomplete: d.incomplete,
            }));
        }
    }
}

/// A request dropped before it ran (its client left, or the server is closing).
fn finish_job(j: &Job) {
    let _ = j.events.send(Event::Done(Done {
        text: String::new(),
        tail: String::new(),
        reasoning: String::new(),
        reasoning_tail: String::new(),
        finish_reason: "length",
        usage: Usage {
            prompt: j.prompt_tokens,
            completion: 0,
        },
        incomplete: false,
    }));
}

/// A request's prompt tokens and settings, as `ember -p` (completions) or `ember --chat -p`
/// (chat) would make them.
fn request(
    loaded: &Loaded,
    settings: &Settings,
    spec: &JobSpec,
    index: usize,
) -> Result<Request, ApiError> {
    let tok = &loaded.tokenizer;
    let (prompt, split) = match spec.kind {
        Kind::Completion => (
            crate::app::batch::encode(tok, &spec.prompt, true, false),
            None,
        ),
        Kind::Chat => {
            let msgs: Vec<Message> = spec.messages.clone();
            let text = crate::app::batch::render(&settings.format, None, msgs)
                .map_err(|e| ApiError::bad(e, Some("messages")))?;
            (
                crate::app::batch::encode(tok, &text, true, true),
                settings.format.reasoning_splitter(&text),
            )
        }
    };
    if prompt.is_empty() {
        return Err(ApiError::bad("the prompt is empty", Some("prompt")));
    }
    let mut sampling = settings.sampling.clone();
    let set = |dst: &mut f32, v: Option<f32>| *dst = v.unwrap_or(*dst);
    set(&mut sampling.temp, spec.temperature);
    set(&mut sampling.top_p, spec.top_p);
    set(&mut sampling.min_p, spec.min_p);
    set(&mut sampling.frequency_penalty, spec.frequency_penalty);
    set(&mut sampling.presence_penalty, spec.presence_penalty);
    sampling.top_k = spec.top_k.unwrap_or(sampling.top_k);
    sampling.seed = spec.seed.unwrap_or(sampling.seed);
    Ok(Request {
        index,
        prompt,
        sampling,
        n_predict: spec.max_tokens.unwrap_or(settings.n_predict),
        ignore_eos: spec.ignore_eos,
        stop: spec.stop.clone(),
        special: false,
        guard: spec
            .format
            .as_ref()
            .map(|f| loaded.guard(f, settings.threads)),
        split,
    })
}
