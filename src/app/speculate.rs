//! Setting up speculative decoding for a one-shot run: the draft model (its own context and
//! cache types, vocabulary checked against the target's) or prompt lookup.

use anyhow::{Context as _, Result};

use crate::cli::args::FlashAttn;
use crate::cli::args::SpecArgs;
use crate::cli::config::{cache_type, flash_attn_choice, ModelConfig, UsageError};
use crate::sampling::{Sampler, SamplingParams};
use crate::speculative::{compat, DraftModel, Drafter, Lookup, SpecParams, Speculator};

use super::load::{self, Loaded};

fn spec_params(a: &SpecArgs) -> SpecParams {
    SpecParams {
        draft_max: a.draft_max,
        draft_min: a.draft_min,
        fixed: a.spec_fixed,
    }
}

/// The speculation the flags ask for, if any.
pub fn speculator(
    a: &SpecArgs,
    target_cfg: &ModelConfig,
    target: &Loaded,
    sampler: &Sampler,
) -> Result<Option<Speculator>> {
    let drafter = drafter(a, target_cfg, target, sampler)?;
    Ok(drafter.map(|d| Speculator::new(d, spec_params(a))))
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
    let type_k = cache_type("--cache-type-k-draft", &s.cache_type_k_draft)?;
    let type_v = cache_type("--cache-type-v-draft", &s.cache_type_v_draft)?;
    let fa = if target_cfg.flash_attn {
        FlashAttn::Auto
    } else {
        FlashAttn::Off
    };
    let (flash_attn, flash_attn_why) = flash_attn_choice(fa, type_v)?;
    let cfg = ModelConfig {
        path: path.clone(),
        n_threads: match s.threads_draft {
            Some(0) => return Err(UsageError("--threads-draft must be at least 1".into()).into()),
            Some(t) => t,
            None => target_cfg.n_threads,
        },
        type_k,
        type_v,
        flash_attn,
        flash_attn_why,
        ..target_cfg.clone()
    };
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
