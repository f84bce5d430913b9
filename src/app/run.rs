//! One-shot generation: `ember -m MODEL -p PROMPT`. Only the continuation goes to stdout,
//! streamed as it is generated; timings go to stderr.

use std::io::Write;

use anyhow::{Context as _, Result};

use crate::cli::args::{RunArgs, SamplingArgs};
use crate::cli::config::ModelConfig;
use crate::generate::{generate, GenerateParams, StopReason};
use crate::sampling::{Sampler, SamplingParams, SEED_RANDOM};
use crate::tokenizer::StreamDecoder;

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

pub fn run(a: &RunArgs) -> Result<()> {
    let cfg = ModelConfig::from_args(&a.model, DEFAULT_CTX)?;
    let prompt = read_prompt(a)?;
    let loaded = super::load::load(&cfg)?;
    let cfg = ModelConfig {
        n_ctx: cfg.n_ctx.min(loaded.model.hp.n_ctx_train.max(1)),
        ..cfg
    };
    let mut session = super::load::session(&loaded, &cfg)?;
    let tok = &loaded.tokenizer;
    let ids = tok.encode(&prompt, true, !a.no_parse_special);
    let mut sampler = Sampler::new(sampling_params(&a.sampling));
    log::info!(
        "prompt: {} tokens; sampling seed {}",
        ids.len(),
        sampler.seed()
    );

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut decoder = StreamDecoder::new(a.special);
    let mut write_err = None;
    let params = GenerateParams {
        n_predict: a.n_predict,
        ignore_eos: a.ignore_eos,
    };
    let mut drafter = super::speculate::drafter(a, &cfg, &loaded, &mut sampler)?;
    let on_token = |id| {
        let text = decoder.push(tok, id);
        match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
            Ok(()) => true,
            Err(e) => {
                write_err = Some(e);
                false
            }
        }
    };
    let (stop, timings, spec_stats) = match &mut drafter {
        Some(d) => {
            let sp = super::speculate::spec_params(&a.spec);
            let (stop, t, st) = crate::speculative::generate(
                &mut session,
                d,
                tok,
                &mut sampler,
                &ids,
                params,
                &sp,
                on_token,
            )?;
            (stop, t, Some(st))
        }
        None => {
            let (stop, t) = generate(&mut session, tok, &mut sampler, &ids, params, on_token)?;
            (stop, t, None)
        }
    };
    if let Some(e) = write_err {
        return Err(e).context("writing to stdout");
    }
    let tail = decoder.flush();
    out.write_all(tail.as_bytes())
        .and_then(|_| out.flush())
        .context("writing to stdout")?;
    drop(out);
    if stop == StopReason::ContextFull {
        log::warn!("stopped: the context of {} tokens is full", session.n_ctx());
    }
    if !a.no_perf {
        eprintln!();
        eprintln!(
            "ember: load: {:.1} ms | {}",
            loaded.load_time.as_secs_f64() * 1e3,
            timings.report()
        );
        if let Some(st) = &spec_stats {
            eprintln!("ember: {}", st.report(timings.generated, timings.decode));
        }
    }
    Ok(())
}
