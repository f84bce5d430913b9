//! `ember serve`: an OpenAI-compatible HTTP server on the batch engine.
//!
//! ```text
//! clients ─HTTP─► axum handlers (http.rs: auth, body cap, api.rs: parse) ─Command─► engine
//! thread (engine.rs: model, session of -np sequences, Batch: continuous batching)
//!                 ◄─Event (Accepted, Delta, Done) per request── one JSON or an SSE stream
//! ```
//!
//! The HTTP side listens before the model loads (`/health` says 503 until it is ready).
//! SIGINT/SIGTERM: stop accepting, end the requests in flight (their streams finish), exit 0.

pub mod api;
pub mod engine;
pub mod http;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::cli::args::ServeArgs;
use crate::cli::config::{sampling_params, ContextSize, ModelConfig, UsageError};
use crate::generate::batch::Batch;

use super::load;
use engine::{Command, Settings, Shared};

/// The total context when `-c` is not given: shared by the slots.
pub const SERVE_CTX: u32 = 8192;

pub fn run(a: &ServeArgs) -> Result<()> {
    let n_ctx = ContextSize::exactly(a.model.ctx_size.unwrap_or(SERVE_CTX));
    let cfg = ModelConfig::from_args(&a.model, n_ctx)?;
    if a.parallel == 0 {
        return Err(UsageError("--parallel must be at least 1".into()).into());
    }
    let model_name = cfg
        .path
        .file_name()
        .map_or("model".to_string(), |n| n.to_string_lossy().into_owned());
    let shared = Arc::new(Shared::default());
    let (tx, rx) = mpsc::channel::<Command>();
    let state = Arc::new(http::AppState {
        tx: Mutex::new(tx.clone()),
        shared: shared.clone(),
        capacity: a.parallel as usize + a.queue,
        api_key: a.api_key.clone().filter(|k| !k.is_empty()),
        model: model_name,
        created: http::now_secs(),
        next_id: AtomicU64::new(1),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let addr = format!("{}:{}", a.host, a.port);
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(&addr))
        .with_context(|| format!("listening on {addr}"))?;
    eprintln!("ember: listening on http://{addr} (loading the model)");
    let router = http::router(state, a.max_body);
    let server = rt.spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown_signal(tx))
            .await
    });

    // the engine: this thread, which loads the model and keeps ggml's objects
    let loaded = load::load(&cfg)?;
    let total_ctx = cfg.n_ctx.resolve(loaded.model.hp.n_ctx_train);
    let invariant = a.invariant == "on";
    let mut session = load::session_seqs(&loaded, &cfg, a.parallel, invariant)?;
    let settings = Settings {
        sampling: sampling_params(&a.sampling),
        n_predict: a.n_predict,
        timeout: (a.timeout > 0).then(|| Duration::from_secs(a.timeout)),
        format: super::front::chat_format(
            &loaded,
            a.chat_template.as_deref(),
            &a.reasoning.template_vars(),
        )?,
        threads: cfg.n_threads,
    };
    // speculation for a lone greedy request: the draft samples greedily too
    let greedy = crate::sampling::Sampler::new(crate::sampling::SamplingParams {
        temp: 0.0,
        ..settings.sampling.clone()
    });
    let speculator = super::speculate::speculator(&a.spec, &cfg, &loaded, &greedy)?;
    if speculator.is_some() {
        session.enable_verify()?;
    }
    let mut batch = Batch::new(&mut session, &loaded.tokenizer);
    batch.set_continuations(true);
    batch.set_speculation(speculator);
    shared.ready.store(true, Ordering::SeqCst);
    eprintln!(
        "ember: ready: {} slots of {} tokens (-c {total_ctx} shared), queue {}",
        a.parallel,
        batch.seq_cells(),
        a.queue
    );
    let result = engine::run(&loaded, &mut batch, &settings, &rx, &shared);
    if let Some((drafted, accepted, steps)) = batch.spec_stats() {
        eprintln!(
            "ember: speculation: {steps} speculative steps, {drafted} tokens drafted, {accepted} accepted"
        );
    }
    // the engine has returned: in-flight streams are finished; let the server close
    match rt.block_on(server) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::warn!("the HTTP server: {e}"),
        Err(e) => log::warn!("the HTTP server task: {e}"),
    }
    rt.shutdown_timeout(Duration::from_secs(2));
    eprintln!("ember: stopped");
    result
}

/// Resolves on SIGINT or SIGTERM, after telling the engine to end what is in flight.
async fn shutdown_signal(tx: mpsc::Sender<Command>) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    eprintln!("ember: stopping: no new requests; ending those in flight");
    let _ = tx.send(Command::Shutdown);
}
