//! `ember perplexity --kv-compare`: the f16 cache and the chosen cache types over the same
//! chunks in one run. Each chunk goes through both sessions (they share the model's weights);
//! the f16 session's log-probs are quantized as llama.cpp's saved-logits file would hold them,
//! so the KLD is the figure `--kl-divergence` against a saved f16 base gives.

use std::io::Write;
use std::time::Instant;

use anyhow::Result;

use crate::cli::args::PerplexityArgs;
use crate::cli::config::ModelConfig;
use crate::ggml::Type;
use crate::perplexity::{
    first_scored, quantize_log_probs, scored_per_chunk, KldAccumulator, LogProbRow, PplAccumulator,
    RowQuant,
};

use super::load::{self, Loaded};
use super::perplexity::{eval_chunk, progress};

pub fn run(
    a: &PerplexityArgs,
    cfg: &ModelConfig,
    loaded: &Loaded,
    tokens: &[u32],
    n_chunk: usize,
) -> Result<()> {
    let n_ctx = cfg.n_ctx.resolve(loaded.model.hp.n_ctx_train) as usize;
    let n_vocab = loaded.model.hp.n_vocab as usize;
    let base_cfg = ModelConfig {
        type_k: Type::F16,
        type_v: Type::F16,
        ..cfg.clone()
    };
    let mut base = load::session(loaded, &base_cfg)?;
    let mut test = load::session(loaded, cfg)?;
    let (first, scored) = (first_scored(n_ctx), scored_per_chunk(n_ctx));
    let (base_name, test_name) = (
        format!("{}/{}", Type::F16, Type::F16),
        format!("{}/{}", cfg.type_k, cfg.type_v),
    );
    eprintln!(
        "kv-compare: {base_name} against {test_name}, {n_chunk} chunks of {n_ctx} ({} tokens)",
        tokens.len()
    );
    let mut base_ppl = PplAccumulator::new();
    let mut test_ppl = PplAccumulator::new();
    let mut kld = KldAccumulator::new();
    let mut q = vec![0u16; scored * n_vocab];
    let mut quant: Vec<RowQuant> = Vec::with_capacity(scored);
    let t0 = Instant::now();
    for c in 0..n_chunk {
        let chunk = &tokens[c * n_ctx..(c + 1) * n_ctx];
        let target = |k: usize| chunk[first + 1 + k];
        let logits = eval_chunk(&mut base, loaded, chunk)?;
        quant.clear();
        for (k, row) in logits.chunks_exact(n_vocab).take(scored).enumerate() {
            base_ppl.add_token(row, target(k));
            quant.push(quantize_log_probs(
                row,
                &mut q[k * n_vocab..(k + 1) * n_vocab],
            ));
        }
        let logits = eval_chunk(&mut test, loaded, chunk)?;
        for (k, row) in logits.chunks_exact(n_vocab).take(scored).enumerate() {
            test_ppl.add_token(row, target(k));
            let b = LogProbRow {
                scale: quant[k].scale,
                min: quant[k].min_log_prob,
                q: &q[k * n_vocab..(k + 1) * n_vocab],
            };
            kld.add(row, &b, target(k));
        }
        progress(c, n_chunk, t0, &kld.chunk_line(c + 1));
    }
    eprintln!();
    let s = kld.summary();
    let ((pb, pb_err), (pt, pt_err)) = (base_ppl.ppl(), test_ppl.ppl());
    let delta = pt - pb;
    let mut out = std::io::stdout().lock();
    if a.json {
        let v = serde_json::json!({
            "base": { "type_k": "f16", "type_v": "f16", "ppl": pb, "ppl_err": pb_err },
            "test": {
                "type_k": cfg.type_k.name(), "type_v": cfg.type_v.name(),
                "ppl": pt, "ppl_err": pt_err,
            },
            "delta_ppl": delta, "delta_ppl_err": s.ppl_diff_err,
            "kld_mean": s.kld_mean, "kld_err": s.kld_err,
            "same_top_pct": s.same_top_pct(), "same_top_err_pct": s.same_top_err_pct(),
            "chunks": n_chunk, "n_ctx": n_ctx, "flash_attn": cfg.flash_attn,
        });
        writeln!(out, "{v}")?;
    } else {
        writeln!(out, "KV cache     PPL")?;
        writeln!(out, "{base_name:<12} {pb:.4} ± {pb_err:.4}")?;
        writeln!(out, "{test_name:<12} {pt:.4} ± {pt_err:.4}")?;
        writeln!(
            out,
            "ΔPPL         {delta:+.4} ± {:.4} ({:+.3} %)",
            s.ppl_diff_err,
            100.0 * delta / pb
        )?;
        writeln!(out, "Mean KLD     {:.6} ± {:.6}", s.kld_mean, s.kld_err)?;
        writeln!(
            out,
            "Same top     {:.3} ± {:.3} %",
            s.same_top_pct(),
            s.same_top_err_pct()
        )?;
    }
    Ok(())
}
