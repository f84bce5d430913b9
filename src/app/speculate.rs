//! Setting up speculative decoding for a one-shot run: the draft model (its own context and
//! cache types, vocabulary checked against the target's) or prompt lookup.

use anyhow::{Context as _, Result};

use crate::cli::args::FlashAttn;
use crate::cli::args::SpecArgs;
use crate::cli::config::{cache_type, flash_attn_choice, ModelConfig, UsageError};
use crate::model::tune;
use crate::sampling::{Sampler, SamplingParams};
use crate::speculative::cost::Costs;
use crate::speculative::policy::Policy;
use crate::speculative::{compat, draft_cap, DraftModel, Drafter, Lookup, SpecParams, Speculator};

use super::load::{self, Loaded};

fn spec_params(a: &SpecArgs) -> SpecParams {
    SpecParams {
        draft_max: a.draft_max,
        draft_min: a.draft_min,
        fixed: a.spec_fixed,
    }
}

/// The speculation the flags ask for, if any: none where the pass times an earlier run kept
/// show that no draft can pay on this machine (the draft model is then not even loaded).
pub fn speculator(
    a: &SpecArgs,
    target_cfg: &ModelConfig,
    target: &Loaded,
    sampler: &Sampler,
) -> Result<Option<Speculator>> {
    if !a.lookup && a.model_draft.is_none() {
        return Ok(None);
    }
    let prior = prior_costs(a, target_cfg)?;
    if a.model_draft.is_some() && !a.lookup && a.draft_max > 0 && !a.spec_fixed {
        let limit = draft_cap(a.draft_max, sampler.is_greedy(), &target.model.weights);
        let mut p = Policy::new(limit, false);
        prior
            .target
            .iter()
            .for_each(|&(n, s)| p.record_target(n, s));
        if let Some(d) = prior.draft {
            p.record_draft(d);
        }
        if p.never_pays(limit) {
            log::info!(
                "speculation: by the pass times kept in the tune file, no draft of at most {limit} tokens can pay on this machine: plain decoding, draft model not loaded (EMBER_TUNE=refresh measures again)"
            );
            return Ok(None);
        }
    }
    let drafter = drafter(a, target_cfg, target, sampler)?;
    Ok(drafter.map(|d| {
        let mut s = Speculator::new(d, spec_params(a));
        s.prior = prior;
        s
    }))
}

/// The pass times an earlier run kept for the target and the drafter (see
/// `crate::model::tune::pass_times`).
fn prior_costs(a: &SpecArgs, target_cfg: &ModelConfig) -> Result<Costs> {
    let times = |c: &ModelConfig| {
        let key = tune::model_key(&c.path, c.type_k, c.type_v, c.flash_attn);
        tune::pass_times(&key, c.n_threads, c.load.tune)
    };
    let draft = match (&a.model_draft, a.lookup) {
        (_, true) => Some(0.0),
        (Some(_), false) => {
            let t = times(&draft_config(a, target_cfg)?);
            t.iter().find(|&&(n, _)| n == 1).map(|&(_, s)| s)
        }
        (None, false) => None,
    };
    Ok(Costs {
        target: times(target_cfg),
        draft,
    })
}

/// Keeps the pass times a speculative generation measured, for the next run's
/// [`speculator`].
pub fn keep_costs(a: &SpecArgs, target_cfg: &ModelConfig, c: &Costs) -> Result<()> {
    let keep = |cfg: &ModelConfig, times: &[(usize, f64)]| {
        let key = tune::model_key(&cfg.path, cfg.type_k, cfg.type_v, cfg.flash_attn);
        tune::save_pass_times(&key, cfg.n_threads, cfg.load.tune, times);
    };
    keep(target_cfg, &c.target);
    if let (Some(_), false, Some(d)) = (&a.model_draft, a.lookup, c.draft) {
        keep(&draft_config(a, target_cfg)?, &[(1, d)]);
    }
    Ok(())
}

/// The draft model's settings: the target's, with the draft's own file, threads, cache types.
fn draft_config(s: &SpecArgs, target_cfg: &ModelConfig) -> Result<ModelConfig> {
    let path = s
        .model_draft
        .clone()
        .ok_or_else(|| UsageError("no draft model".into()))?;
    let type_k = cache_type("--cache-type-k-draft", &s.cache_type_k_draft)?;
    let type_v = cache_type("--cache-type-v-draft", &s.cache_type_v_draft)?;
    let fa = if target_cfg.flash_attn {
        FlashAttn::Auto
    } else {
        FlashAttn::Off
    };
    let (flash_attn, flash_attn_why) = flash_attn_choice(fa, type_v)?;
    let n_threads = match s.threads_draft {
        Some(0) => return Err(UsageError("--threads-draft must be at least 1".into()).into()),
        Some(t) => t,
        None => target_cfg.n_threads,
    };
    Ok(ModelConfig {
        path,
        n_threads,
        type_k,
        type_v,
        flash_attn,
        flash_attn_why,
        load: crate::model::LoadOptions {
            threads: n_threads,
            ..target_cfg.load
        },
        ..target_cfg.clone()
    })
}

/// The drafter the flags ask for, if any.
fn drafter(
    s: &SpecArgs,
    target_cfg: &ModelConfig,
    target: &Loaded,
    sampler: &Sampler,
) -> Result<Option<Box<dyn Drafter>>> {
    if s.draft_max == 0 {
        if s.lookup || s.model_draft.is_some() {
            return Err(UsageError("--draft-max must be at least 1".into()).into());
        }
        return Ok(None);
    }
    if s.lookup {
        if s.lookup_ngram == 0 {
            return Err(UsageError("--lookup-ngram must be at least 1".into()).into());
        }
        return Ok(Some(Box::new(Lookup::new(s.lookup_ngram))));
    }
    let Some(path) = &s.model_draft else {
        return Ok(None);
    };
    let cfg = draft_config(s, target_cfg)?;
    let loaded = load::load(&cfg).context("draft model")?;
    compat::check(&target.tokenizer, &loaded.tokenizer)
        .with_context(|| format!("draft model {}", path.display()))?;
    let session = load::session(&loaded, &cfg).context("draft model")?;
    // The draft samples with the target's chain but no penalties (any draft distribution
    // keeps the output exact; penalties would need the draft's own history rolled back).
    let params = SamplingParams {
        repeat_penalty: 1.0,
        frequency_penalty: 0.0,
        presence_penalty: 0.0,
        seed: u64::from(sampler.seed()) ^ 0x9e37_79b9,
        ..sampler.params().clone()
    };
    Ok(Some(Box::new(DraftModel::new(
        session,
        Sampler::new(params),
        s.draft_p_min,
    ))))
}
