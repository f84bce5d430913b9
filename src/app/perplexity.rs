//! `ember perplexity`: llama.cpp's method (chunks of n_ctx tokens, BOS first where the vocab
//! adds one, the second half of each chunk scored), reading and writing llama.cpp's
//! saved-logits files so the figures compare one to one.

use std::io::{BufWriter, Write};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};

use crate::cli::args::PerplexityArgs;
use crate::cli::config::{ContextSize, ModelConfig, UsageError, PERPLEXITY_CTX};
use crate::generate::{Session, Want};
use crate::perplexity::{
    first_scored, scored_per_chunk, KldAccumulator, LogitsReader, LogitsWriter, PplAccumulator,
};

use super::load::{self, Loaded};

pub fn run(a: &PerplexityArgs) -> Result<()> {
    let n_ctx = ContextSize::exactly(a.model.ctx_size.unwrap_or(PERPLEXITY_CTX));
    let cfg = ModelConfig::from_args(&a.model, n_ctx)?;
    if a.kl_divergence {
        return kl_divergence(a, &cfg);
    }
    let text = read_text(a)?;
    let loaded = load::load(&cfg)?;
    let cfg = cfg.resolved(loaded.model.hp.n_ctx_train);
    let n_ctx = cfg.n_ctx.resolve(loaded.model.hp.n_ctx_train) as usize;
    let (tokens, n_chunk) = chunk_tokens(a, &loaded, &text, n_ctx)?;
    if a.kv_compare {
        return super::kv_compare::run(a, &cfg, &loaded, &tokens, n_chunk);
    }
    let mut session = load::session(&loaded, &cfg)?;
    let n_vocab = loaded.model.hp.n_vocab as usize;
    let mut writer = match &a.kl_divergence_base {
        Some(p) => {
            let f =
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?;
            let mut w = LogitsWriter::new(BufWriter::new(f), n_ctx, n_vocab, n_chunk)?;
            let all: Vec<i32> = tokens[..n_chunk * n_ctx]
                .iter()
                .map(|&t| t as i32)
                .collect();
            w.write_tokens(&all)?;
            Some(w)
        }
        None => None,
    };
    eprintln!(
        "perplexity: {} tokens, {n_chunk} chunks of {n_ctx}",
        tokens.len()
    );
    let mut acc = PplAccumulator::new();
    let (first, scored) = (first_scored(n_ctx), scored_per_chunk(n_ctx));
    let t0 = Instant::now();
    for c in 0..n_chunk {
        let chunk = &tokens[c * n_ctx..(c + 1) * n_ctx];
        let logits = eval_chunk(&mut session, &loaded, chunk)?;
        for k in 0..scored {
            let row = &logits[k * n_vocab..(k + 1) * n_vocab];
            let target = chunk[first + 1 + k];
            match &mut writer {
                Some(w) => {
                    let nll = w.write_row(row)?;
                    acc.add_nll(nll);
                }
                None => {
                    acc.add_token(row, target);
                }
            }
        }
        progress(c, n_chunk, t0, &acc.chunk_line(c + 1));
    }
    eprintln!();
    if let Some(w) = writer {
        w.finish()?.flush()?;
    }
    let (ppl, err) = acc.ppl();
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({ "ppl": ppl, "ppl_err": err, "chunks": n_chunk, "n_ctx": n_ctx })
        )?;
    } else {
        writeln!(out, "{}", acc.final_line())?;
    }
    Ok(())
}

fn read_text(a: &PerplexityArgs) -> Result<String> {
    let Some(path) = &a.file else {
        return Err(UsageError("perplexity needs a text file (-f FILE)".into()).into());
    };
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The text's tokens and how many whole chunks of `n_ctx` are scored (at most --chunks).
fn chunk_tokens(
    a: &PerplexityArgs,
    loaded: &Loaded,
    text: &str,
    n_ctx: usize,
) -> Result<(Vec<u32>, usize)> {
    let tokens = loaded.tokenizer.encode(text, true, false);
    if tokens.len() < 2 * n_ctx {
        bail!(
            "{} tokenizes to {} tokens; a context of {n_ctx} needs at least {}",
            a.file
                .as_deref()
                .unwrap_or(std::path::Path::new("-"))
                .display(),
            tokens.len(),
            2 * n_ctx
        );
    }
    let n_chunk = (tokens.len() / n_ctx).min(a.chunks.unwrap_or(usize::MAX));
    Ok((tokens, n_chunk))
}

/// Evaluate one chunk from an empty cache (BOS first where the vocabulary adds one) and return
/// the logits of its scored half.
pub(super) fn eval_chunk<'s>(
    session: &'s mut Session,
    loaded: &Loaded,
    chunk: &[u32],
) -> Result<&'s [f32]> {
    let mut input = chunk.to_vec();
    if loaded.tokenizer.add_bos() {
        if let Some(bos) = loaded.tokenizer.bos() {
            input[0] = bos;
        }
    }
    session.clear();
    Ok(session.eval(&input, Want::From(first_scored(chunk.len())))?)
}

pub(super) fn progress(c: usize, n_chunk: usize, t0: Instant, line: &str) {
    if c == 0 {
        let per = t0.elapsed().as_secs_f64();
        eprintln!(
            "perplexity: {per:.2} seconds per chunk, ETA {:.1} minutes",
            per * n_chunk as f64 / 60.0
        );
    }
    eprint!("{line}");
}

fn kl_divergence(a: &PerplexityArgs, cfg: &ModelConfig) -> Result<()> {
    let base = a.kl_divergence_base.as_ref().expect("clap requires it");
    let mut reader = LogitsReader::open(base)
        .with_context(|| format!("reading saved logits {}", base.display()))?;
    let n_ctx = reader.n_ctx() as usize;
    let cfg = ModelConfig {
        n_ctx: ContextSize::exactly(reader.n_ctx()),
        ..cfg.clone()
    };
    let loaded = load::load(&cfg)?;
    let n_vocab = loaded.model.hp.n_vocab as usize;
    if reader.n_vocab() as usize != n_vocab {
        bail!(
            "{} was saved with a vocabulary of {} tokens; this model has {n_vocab}",
            base.display(),
            reader.n_vocab()
        );
    }
    let n_chunk = (reader.n_chunk() as usize).min(a.chunks.unwrap_or(usize::MAX));
    let mut session = load::session(&loaded, &cfg)?;
    let (first, scored) = (first_scored(n_ctx), scored_per_chunk(n_ctx));
    eprintln!(
        "kl-divergence: {n_chunk} chunks of {n_ctx} from {}",
        base.display()
    );
    let mut kld = KldAccumulator::new();
    let t0 = Instant::now();
    for c in 0..n_chunk {
        let chunk: Vec<u32> = reader.chunk_tokens(c).iter().map(|&t| t as u32).collect();
        let logits = eval_chunk(&mut session, &loaded, &chunk)?;
        for k in 0..scored {
            let row = &logits[k * n_vocab..(k + 1) * n_vocab];
            let target = chunk[first + 1 + k];
            let base_row = reader.row(c * scored + k)?;
            kld.add(row, &base_row, target);
        }
        progress(c, n_chunk, t0, &kld.chunk_line(c + 1));
    }
    eprintln!();
    let s = kld.summary();
    let mut out = std::io::stdout().lock();
    if a.json {
        let v = serde_json::json!({
            "ppl": s.ppl, "ppl_err": s.ppl_err, "ppl_base": s.ppl_base, "ppl_base_err": s.ppl_base_err,
            "ppl_ratio": s.ppl_ratio, "kld_mean": s.kld_mean, "kld_err": s.kld_err,
            "same_top_pct": s.same_top_pct(), "same_top_err_pct": s.same_top_err_pct(),
            "chunks": n_chunk, "n_ctx": n_ctx,
        });
        writeln!(out, "{v}")?;
    } else {
        match s.report() {
            Some(r) => write!(out, "{r}")?,
            None => writeln!(
                out,
                "Mean KLD: {:.6} ± {:.6}\nSame top p: {:.3} ± {:.3} %\nPPL ratio: {:.6}",
                s.kld_mean,
                s.kld_err,
                s.same_top_pct(),
                s.same_top_err_pct(),
                s.ppl_ratio
            )?,
        }
    }
    Ok(())
}
