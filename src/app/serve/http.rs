//! The HTTP side (axum on tokio): routes, the API key, the body cap, and turning a request's
//! engine events into one JSON response or a server-sent-event stream. Every body is parsed
//! here (`api::parse`), never trusted.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::api::{self, ApiError, Kind, Reply, Usage};
use super::engine::{Command, Event, Shared, Submit};

pub struct AppState {
    pub tx: Mutex<Sender<Command>>,
    pub shared: Arc<Shared>,
    /// Requests that may be pending at once (slots + queue); more get 503.
    pub capacity: usize,
    pub api_key: Option<String>,
    pub model: String,
    pub created: u64,
    pub next_id: AtomicU64,
}

pub fn router(state: Arc<AppState>, max_body: usize) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn error(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(e.body())).into_response()
}

/// The access log: one line per request on stderr.
fn access(method: &str, path: &str, status: u16, usage: Usage, since: Instant, note: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr().lock(),
        "{method} {path} {status} prompt={} generated={} {:.0}ms{note}",
        usage.prompt,
        usage.completion,
        since.elapsed().as_secs_f64() * 1e3
    );
}

async fn health(State(st): State<Arc<AppState>>) -> Response {
    if st.shared.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, Json(json!({"status": "ok"}))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "loading model"})),
        )
            .into_response()
    }
}

fn authorized(st: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &st.api_key else {
        return Ok(());
    };
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given == Some(key.as_str()) {
        Ok(())
    } else {
        Err(ApiError::new(
            401,
            "invalid_request_error",
            "invalid API key (send Authorization: Bearer KEY)",
        ))
    }
}

async fn models(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(e) = authorized(&st, &headers) {
        return error(&e);
    }
    Json(json!({
        "object": "list",
        "data": [{"id": st.model, "object": "model", "created": st.created, "owned_by": "ember"}],
    }))
    .into_response()
}

async fn not_found(method: Method, uri: Uri) -> Response {
    error(&ApiError::new(
        404,
        "invalid_request_error",
        format!("no route {method} {}", uri.path()),
    ))
}

async fn chat(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    complete(st, Kind::Chat, headers, body).await
}

async fn completions(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    complete(st, Kind::Completion, headers, body).await
}

/// Takes one pending place (the slots plus the queue), or says the server is full.
fn reserve(st: &AppState) -> Result<(), ApiError> {
    let p = &st.shared.pending;
    let mut cur = p.load(Ordering::SeqCst);
    loop {
        if cur >= st.capacity {
            return Err(ApiError::new(
                503,
                "server_error",
                "the server is busy: every slot and queue place is taken; retry later",
            ));
        }
        match p.compare_exchange(cur, cur + 1, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return Ok(()),
            Err(now) => cur = now,
        }
    }
}

async fn complete(st: Arc<AppState>, kind: Kind, headers: HeaderMap, body: Bytes) -> Response {
    let since = Instant::now();
    let path = match kind {
        Kind::Chat => "/v1/chat/completions",
        Kind::Completion => "/v1/completions",
    };
    let fail = |e: ApiError| {
        access("POST", path, e.status, Usage::default(), since, "");
        error(&e)
    };
    if let Err(e) = authorized(&st, &headers) {
        return fail(e);
    }
    if !st.shared.ready.load(Ordering::SeqCst) {
        return fail(ApiError::new(503, "server_error", "the model is loading"));
    }
    let spec = match api::parse(kind, &body) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if let Err(e) = reserve(&st) {
        return fail(e);
    }
    let (tx, mut rx) = unbounded_channel();
    let (stream, include_usage) = (spec.stream, spec.include_usage);
    let submit = Command::Submit(Box::new(Submit {
        spec,
        events: tx,
        at: since,
    }));
    let sent = st
        .tx
        .lock()
        .map(|t| t.send(submit).is_ok())
        .unwrap_or(false);
    if !sent {
        st.shared.pending.fetch_sub(1, Ordering::SeqCst);
        return fail(ApiError::new(
            503,
            "server_error",
            "the server is shutting down",
        ));
    }
    let prompt_tokens = match rx.recv().await {
        Some(Event::Accepted { prompt_tokens }) => prompt_tokens,
        Some(Event::Failed(e)) => return fail(e),
        _ => return fail(ApiError::new(500, "server_error", "the engine stopped")),
    };
    let n = st.next_id.fetch_add(1, Ordering::SeqCst);
    let reply = Reply {
        kind,
        id: match kind {
            Kind::Chat => format!("chatcmpl-{n}"),
            Kind::Completion => format!("cmpl-{n}"),
        },
        created: now_secs(),
        model: st.model.clone(),
    };
    if stream {
        let log = StreamLog {
            path,
            since,
            usage: Usage {
                prompt: prompt_tokens,
                completion: 0,
            },
            done: false,
        };
        return sse(reply, rx, include_usage, log).into_response();
    }
    loop {
        match rx.recv().await {
            Some(Event::Delta { .. }) | Some(Event::Accepted { .. }) => {}
            Some(Event::Done(d)) => {
                access("POST", path, 200, d.usage, since, "");
                let body =
                    reply.full_with_reasoning(&d.text, &d.reasoning, d.finish_reason, d.usage);
                return Json(body).into_response();
            }
            Some(Event::Failed(e)) => return fail(e),
            None => return fail(ApiError::new(500, "server_error", "the engine stopped")),
        }
    }
}

/// Logs a stream's line when it ends, also when its client went away mid-stream.
struct StreamLog {
    path: &'static str,
    since: Instant,
    usage: Usage,
    done: bool,
}

impl Drop for StreamLog {
    fn drop(&mut self) {
        let note = if self.done {
            " stream"
        } else {
            " stream (client went away)"
        };
        access("POST", self.path, 200, self.usage, self.since, note);
    }
}

/// The events of one request as server-sent events: the text in chunks, the finish reason,
/// the usage when asked, then `[DONE]`.
fn sse(
    reply: Reply,
    rx: UnboundedReceiver<Event>,
    include_usage: bool,
    log: StreamLog,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>> {
    let data = |v: Value| SseEvent::default().data(v.to_string());
    let first = (reply.kind == Kind::Chat).then(|| data(reply.role_chunk()));
    struct St {
        rx: UnboundedReceiver<Event>,
        reply: Reply,
        log: StreamLog,
        ended: bool,
    }
    let st = St {
        rx,
        reply,
        log,
        ended: false,
    };
    let rest = futures_util::stream::unfold(st, move |mut st| async move {
        if st.ended {
            return None;
        }
        let events: Vec<SseEvent> = loop {
            match st.rx.recv().await {
                Some(Event::Delta { text, reasoning })
                    if !text.is_empty() || !reasoning.is_empty() =>
                {
                    st.log.usage.completion += 1;
                    let mut out = Vec::new();
                    if !reasoning.is_empty() && st.reply.kind == Kind::Chat {
                        out.push(data(st.reply.reasoning_chunk(&reasoning)));
                    }
                    if !text.is_empty() {
                        out.push(data(st.reply.chunk(&text, None)));
                    }
                    if out.is_empty() {
                        continue;
                    }
                    break out;
                }
                Some(Event::Delta { .. }) | Some(Event::Accepted { .. }) => {}
                Some(Event::Done(d)) => {
                    st.log.usage = d.usage;
                    st.log.done = true;
                    st.ended = true;
                    let mut out = Vec::new();
                    if !d.reasoning_tail.is_empty() && st.reply.kind == Kind::Chat {
                        out.push(data(st.reply.reasoning_chunk(&d.reasoning_tail)));
                    }
                    if !d.tail.is_empty() {
                        out.push(data(st.reply.chunk(&d.tail, None)));
                    }
                    out.push(data(st.reply.chunk("", Some(d.finish_reason))));
                    if include_usage {
                        out.push(data(st.reply.usage_chunk(d.usage)));
                    }
                    out.push(SseEvent::default().data("[DONE]"));
                    break out;
                }
                Some(Event::Failed(e)) => {
                    st.ended = true;
                    break vec![data(e.body()), SseEvent::default().data("[DONE]")];
                }
                None => {
                    st.ended = true;
                    break vec![SseEvent::default().data("[DONE]")];
                }
            }
        };
        Some((
            futures_util::stream::iter(events.into_iter().map(Ok::<_, Infallible>)),
            st,
        ))
    });
    use futures_util::StreamExt;
    let head = futures_util::stream::iter(first.into_iter().map(Ok::<_, Infallible>));
    Sse::new(head.chain(rest.flatten()))
}
