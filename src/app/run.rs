//! One-shot generation: `ember -m MODEL -p PROMPT`. Only the continuation goes to stdout,
//! streamed as it is generated; timings go to stderr.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context as _, Result};

use crate::cli::config::{PromptSource, RunConfig};
use crate::generate::{EvalError, GenerateError, StopReason};
use crate::sampling::Sampler;

use super::front::Front;
use super::output::{Output, Summary};

pub use super::front::truncate_prompt;

/// The prompt text: `-p` (escapes already processed), else `-f FILE`, else stdin.
fn read_prompt(cfg: &RunConfig) -> Result<String> {
    let (text, file) = match &cfg.prompt {
        PromptSource::Text(t) => (Some(t.as_str()), None),
        PromptSource::File(f) => (None, Some(f.as_path())),
        PromptSource::Stdin => (None, None),
    };
    super::input::read_text(text, file, false, "prompt")
}

pub fn run(cfg: &RunConfig) -> Result<()> {
    let prompt = read_prompt(cfg)?;
    super::signals::install();
    let mut front = Front::open(&cfg.model)?;
    let (ids, split) = front.prompt_tokens(cfg, &prompt)?;
    let mut sampler = Sampler::new(cfg.sampling.clone());
    if let Some(f) = &cfg.format {
        sampler.set_guard(Some(front.loaded.guard(f, front.model.n_threads)));
    }
    log::info!(
        "prompt: {} tokens; sampling seed {}",
        ids.len(),
        sampler.seed()
    );
    let cache_start = Instant::now();
    let reused = match &cfg.prompt_cache {
        Some(pc) => super::prompt_cache::restore(&mut front.session, &pc.path, &ids)?,
        None => 0,
    };
    let cache_time = cache_start.elapsed();
    for &id in &ids[..reused] {
        sampler.accept(id);
    }

    let stdout = std::io::stdout();
    let mut out = Output::new(cfg.output, stdout.lock(), cfg.special, cfg.stops.clone())
        .with_reasoning(split, cfg.show_reasoning);
    let mut spec = super::speculate::speculator(&cfg.spec, &front.model, &front.loaded, &sampler)?;
    let decoded = front
        .decode(
            &mut sampler,
            spec.as_mut(),
            &ids[reused..],
            cfg.generate,
            &mut out,
        )
        .map_err(interrupted)?;
    if let Some(e) = out.take_error() {
        return Err(e).context("writing to stdout");
    }
    if let Some(c) = decoded.spec.as_ref().and_then(|s| s.costs.as_ref()) {
        super::speculate::keep_costs(&cfg.spec, &front.model, c)?;
    }
    let mut timings = decoded.timings.clone();
    timings.prompt += cache_time;
    timings.ttft += cache_time;
    let stop_hit = out.stop_hit();
    let summary = Summary {
        stop_reason: decoded.stop_reason(stop_hit),
        load: front.loaded.load_time,
        timings: timings.clone(),
        prompt_cached: reused,
    };
    out.finish(&summary).context("writing to stdout")?;
    drop(out);
    let interrupted = decoded.interrupted;
    if let Some(pc) = &cfg.prompt_cache {
        if !pc.read_only && interrupted.is_none() && reused + 1 < ids.len() {
            super::prompt_cache::save(&front.session, &pc.path, &ids)?;
        }
    }
    let incomplete = interrupted.is_none() && !stop_hit && !sampler.is_complete();
    if let Some(g) = sampler.guard() {
        log::info!("{}", g.stats.report(timings.generated));
    }
    if let Some(i) = &interrupted {
        log::warn!("stopped: {i}");
    } else if decoded.stop == StopReason::ContextFull {
        log::warn!(
            "stopped: the context of {} tokens is full",
            front.session.n_ctx()
        );
    }
    if cfg.perf {
        // Like the logger, ignore a closed stderr rather than panic as eprintln! would.
        let cached = if reused > 0 {
            format!(" | prompt cache: {reused} tokens re-used")
        } else {
            String::new()
        };
        let _ = writeln!(
            std::io::stderr().lock(),
            "\nember: load: {:.1} ms | {}{cached}",
            front.loaded.load_time.as_secs_f64() * 1e3,
            timings.report()
        );
        if let Some(st) = &decoded.spec {
            let _ = writeln!(
                std::io::stderr().lock(),
                "ember: {}",
                st.report(timings.generated, timings.decode)
            );
        }
    }
    match interrupted {
        Some(i) => Err(i.into()),
        None if incomplete => Err(super::Incomplete(decoded.stop).into()),
        None => Ok(()),
    }
}

/// A prompt evaluation stopped by a signal ends the run as the signal says (exit 130/143).
fn interrupted(e: GenerateError) -> anyhow::Error {
    match (&e, super::signals::received()) {
        (GenerateError::Eval(EvalError::Interrupted), Some(i)) => {
            log::warn!("stopped during the prompt: {i}");
            i.into()
        }
        _ => e.into(),
    }
}
