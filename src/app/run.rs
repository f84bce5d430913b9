//! One-shot generation: `ember -m MODEL -p PROMPT`. Only the continuation goes to stdout,
//! streamed as it is generated; timings go to stderr.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context as _, Result};

use crate::cli::args::{RunArgs, SamplingArgs};
use crate::cli::config::ModelConfig;
use crate::generate::{generate, EvalError, GenerateError, GenerateParams, StopReason};
use crate::sampling::{Sampler, SamplingParams, SEED_RANDOM};

use super::output::{stop_reason, Mode, Output, Summary};

/// llama.cpp's default context for generation.
const DEFAULT_CTX: u32 = 4096;

pub fn sampling_params(a: &SamplingArgs) -> SamplingParams {
    SamplingParams {
        temp: a.temp,
        top_k: a.top_k,
        top_p: a.top_p,
        min_p: a.min_p,
        repeat_penalty: a.repeat_penalty,
        repeat_last_n: a.repeat_last_n,
        seed: a.seed.unwrap_or(SEED_RANDOM),
        ..SamplingParams::default()
    }
}

/// The prompt; backslash sequences in `-p` are processed as llama.cpp does (files are data).
fn read_prompt(a: &RunArgs) -> Result<String> {
    let text = super::input::read_text(a.prompt.as_deref(), a.file.as_deref(), false, "prompt")?;
    Ok(if a.prompt.is_some() && !a.no_escape {
        crate::cli::process_escapes(&text)
    } else {
        text
    })
}

/// The prompt's first token and its last ones, so that it leaves room for `n_predict` tokens
/// (at most half of `n_ctx`); unchanged when it already fits.
pub fn truncate_prompt(ids: &[u32], n_ctx: u32, n_predict: i64) -> Vec<u32> {
    let n_ctx = n_ctx.max(2) as usize;
    if ids.len() <= n_ctx {
        return ids.to_vec();
    }
    let room = usize::try_from(n_predict)
        .unwrap_or(usize::MAX)
        .min(n_ctx / 2);
    let keep = (n_ctx - room).max(2);
    let mut out = Vec::with_capacity(keep);
    out.push(ids[0]);
    out.extend_from_slice(&ids[ids.len() - (keep - 1)..]);
    out
}

pub fn run(a: &RunArgs) -> Result<()> {
    let cfg = ModelConfig::from_args(&a.model, DEFAULT_CTX)?;
    let prompt = read_prompt(a)?;
    super::signals::install();
    let loaded = super::load::load(&cfg)?;
    if let Some(i) = super::signals::received() {
        log::warn!("stopped before generating: {i}");
        return Err(i.into());
    }
    let cfg = ModelConfig {
        n_ctx: cfg.n_ctx.min(loaded.model.hp.n_ctx_train.max(1)),
        ..cfg
    };
    let mut session = super::load::session(&loaded, &cfg)?;
    session.set_interrupt(Some(super::signals::interrupted));
    let tok = &loaded.tokenizer;
    let prompt = if a.chat {
        super::chat::one_shot_prompt(a, &loaded, &prompt)?
    } else {
        prompt
    };
    let mut ids = tok.encode(&prompt, true, !a.no_parse_special);
    if a.chat && ids.len() >= 2 && tok.bos() == Some(ids[0]) && ids[1] == ids[0] {
        ids.remove(0);
    }
    if a.truncate_prompt && ids.len() > session.n_ctx() as usize {
        let kept = truncate_prompt(&ids, session.n_ctx(), a.n_predict);
        log::warn!(
            "prompt truncated from {} to {} tokens (its first token and the last {}) to fit the context of {}",
            ids.len(),
            kept.len(),
            kept.len() - 1,
            session.n_ctx()
        );
        ids = kept;
    }
    let mut sampler = Sampler::new(sampling_params(&a.sampling));
    log::info!(
        "prompt: {} tokens; sampling seed {}",
        ids.len(),
        sampler.seed()
    );
    let cache_start = Instant::now();
    let reused = match &a.prompt_cache {
        Some(path) => super::prompt_cache::restore(&mut session, path, &ids)?,
        None => 0,
    };
    let cache_time = cache_start.elapsed();
    for &id in &ids[..reused] {
        sampler.accept(id);
    }

    let mode = if a.json {
        Mode::Json
    } else if a.jsonl {
        Mode::Jsonl
    } else {
        Mode::Text
    };
    let stops: Vec<String> = a.stop.iter().chain(&a.reverse_prompt).cloned().collect();
    let stdout = std::io::stdout();
    let mut out = Output::new(mode, stdout.lock(), tok, a.special, stops);
    let params = GenerateParams {
        n_predict: a.n_predict,
        ignore_eos: a.ignore_eos,
    };
    let mut speculator = super::speculate::speculator(a, &cfg, &loaded, &sampler)?;
    let on_token = |id| super::signals::received().is_none() && out.token(id);
    let new = &ids[reused..];
    let (stop, mut timings, spec_stats) = match &mut speculator {
        Some(sp) => {
            let (stop, t, st) = sp
                .generate(&mut session, tok, &mut sampler, new, params, on_token)
                .map_err(interrupted)?;
            (stop, t, Some(st))
        }
        None => {
            let (stop, t) = generate(&mut session, tok, &mut sampler, new, params, on_token)
                .map_err(interrupted)?;
            (stop, t, None)
        }
    };
    if let Some(e) = out.take_error() {
        return Err(e).context("writing to stdout");
    }
    timings.prompt += cache_time;
    timings.ttft += cache_time;
    let interrupted = super::signals::received();
    let summary = Summary {
        stop_reason: stop_reason(stop, out.stop_hit(), interrupted.is_some()),
        load: loaded.load_time,
        timings: timings.clone(),
        prompt_cached: reused,
    };
    out.finish(&summary).context("writing to stdout")?;
    drop(out);
    if let Some(path) = &a.prompt_cache {
        if !a.prompt_cache_ro && interrupted.is_none() && reused + 1 < ids.len() {
            super::prompt_cache::save(&session, path, &ids)?;
        }
    }
    if let Some(i) = &interrupted {
        log::warn!("stopped: {i}");
    } else if stop == StopReason::ContextFull {
        log::warn!("stopped: the context of {} tokens is full", session.n_ctx());
    }
    if !a.no_perf {
        // Like the logger, ignore a closed stderr rather than panic as eprintln! would.
        let cached = if reused > 0 {
            format!(" | prompt cache: {reused} tokens re-used")
        } else {
            String::new()
        };
        let _ = writeln!(
            std::io::stderr().lock(),
            "\nember: load: {:.1} ms | {}{cached}",
            loaded.load_time.as_secs_f64() * 1e3,
            timings.report()
        );
        if let Some(st) = &spec_stats {
            let _ = writeln!(
                std::io::stderr().lock(),
                "ember: {}",
                st.report(timings.generated, timings.decode)
            );
        }
    }
    match interrupted {
        Some(i) => Err(i.into()),
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
