//! Loading a model, its tokenizer and an evaluation session, with the verbose report.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use crate::cli::config::ModelConfig;
use crate::constrain::{Format, Guard, VocabCell};
use crate::generate::{Session, SessionParams};
use crate::ggml::kernels::Placement;
use crate::model::tune::{Shape, TuneReport};
use crate::model::{open_gguf, Model};
use crate::tokenizer::Tokenizer;

pub struct Loaded {
    pub model: Rc<Model>,
    pub tokenizer: Tokenizer,
    pub load_time: Duration,
    /// The vocabulary as the output constraint sees it, built on first use.
    constraint_vocab: Arc<VocabCell>,
}

impl Loaded {
    /// Starts building the output constraint's vocabulary on another thread (a few hundred
    /// milliseconds for a large vocabulary), to be ready by the first token.
    pub fn prepare_constraint(&self) {
        self.constraint_vocab.start(&self.tokenizer);
    }

    /// A constraint for one answer: `format` over this model's vocabulary, its parser made
    /// when first used (the vocabulary may still be under construction).
    /// `compute_threads`: the model's threads (the mask gets a thread of its own only where a
    /// core is left beside them).
    pub fn guard(&self, format: &Format, compute_threads: usize) -> Guard {
        self.prepare_constraint();
        let mut g = Guard::deferred(&self.constraint_vocab, format);
        g.overlap = crate::constrain::spare_core(compute_threads);
        g
    }
}

pub fn load(cfg: &ModelConfig) -> Result<Loaded> {
    let start = Instant::now();
    let path = cfg.path.display().to_string();
    let file = open_gguf(&cfg.path, cfg.mlock).with_context(|| format!("loading {path}"))?;
    let tokenizer = Tokenizer::from_gguf(&file).with_context(|| format!("tokenizer of {path}"))?;
    let file = Arc::new(file);
    let model = Model::load(file, cfg.load).with_context(|| format!("loading {path}"))?;
    let hp = &model.hp;
    log::info!(
        "model: {} ({}), {} layers, n_embd {}, heads {}/{} (kv), head dim {}, vocab {}, trained ctx {}",
        path,
        model.arch.name(),
        hp.n_layer,
        hp.n_embd,
        hp.n_head,
        hp.n_head_kv,
        hp.head_dim_k,
        hp.n_vocab,
        hp.n_ctx_train
    );
    let p = &model.weights.placements;
    log::info!(
        "weights: {:.1} MiB mapped in place, {:.1} MiB copied, {:.1} MiB repacked ({} tensors)",
        p.mapped as f64 / 1048576.0,
        p.copied as f64 / 1048576.0,
        p.repacked as f64 / 1048576.0,
        p.n_repacked
    );
    log_routes(&model);
    log::info!(
        "backends: {}; devices: {}",
        crate::ggml::compiled_backends(),
        super::devices()
    );
    if model.offload.any() {
        log::info!(
            "offload: {}: {:.1} MiB of weights ({} tensors) on the devices",
            model.offload.describe(),
            p.gpu as f64 / 1048576.0,
            p.n_gpu
        );
    }
    Ok(Loaded {
        model: Rc::new(model),
        tokenizer,
        load_time: start.elapsed(),
        constraint_vocab: Arc::default(),
    })
}

/// The route table (`-v`): which kernel multiplies each matrix, by number of columns (tokens
/// in a micro-batch), matrices alike grouped.
fn log_routes(model: &Model) {
    if !log::log_enabled!(log::Level::Info) {
        return;
    }
    let tuning = &model.weights.tuning;
    log_tuning(tuning);
    if let Some(t) = crate::ggml::kernels::column_kernels() {
        let lanes: Vec<usize> = (1..=32)
            .filter(|&n| crate::ggml::kernels::lane_columns_for(n))
            .collect();
        log::info!(
            "decode op over several columns: {} kernels{} (timed: 256-bit {:.3}, 512-bit {:.3}, one column per lane {:.3} ns per row, column and block)",
            if t.wide_pays() { "512-bit" } else { "256-bit" },
            if lanes.is_empty() {
                String::new()
            } else {
                format!(", one column per lane for {} columns (of 1-32)", ranges(&lanes))
            },
            t.narrow,
            t.wide,
            t.lanes,
        );
    }
    let rows = model.weights.route_table();
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let exact = model
        .weights
        .exact_columns()
        .map_or("any number of".to_string(), |n| format!("up to {n}"));
    log::info!(
        "kernel routes by columns per product (products of {exact} columns give one-column results bit for bit):"
    );
    for r in rows {
        let placement = match r.route.placement() {
            Placement::Host => "host",
            Placement::Repacked => "repacked",
            Placement::Device => "device",
        };
        let shape = Shape {
            ty: r.ty,
            ne: r.ne,
            repacked: r.route.placement() == Placement::Repacked,
        };
        let tuned = tuning.verdicts.get(&shape).map_or(String::new(), |vs| {
            let v: Vec<String> = vs.iter().map(|v| v.describe()).collect();
            format!("  (timed: {})", v.join("; "))
        });
        log::info!(
            "  {:<width$} x{:<3} {:<6} {:>14} {:<8} {}; sequences together: {}{tuned}",
            r.name,
            r.count,
            r.ty.name(),
            format!("[{}, {}]", r.ne[0], r.ne[1]),
            placement,
            r.route,
            r.route.describe_batches()
        );
    }
}

/// What kernel tuning did at load (`-v`): how many choices it timed, how long that took, where
/// the decisions are kept.
fn log_tuning(t: &TuneReport) {
    let total: usize = t.verdicts.values().map(Vec::len).sum();
    if total == 0 {
        log::info!("kernel tuning: off (--no-tune, EMBER_TUNE=off) or nothing to choose");
        return;
    }
    let file = t
        .file
        .as_ref()
        .map_or("no cache file".into(), |f| f.display().to_string());
    log::info!(
        "kernel tuning: {} choices, {} timed now in {:.0} ms ({} taken twice, the first uneven or implausible), {} from {file}",
        total,
        t.measured,
        t.took.as_secs_f64() * 1e3,
        t.unsteady,
        total - t.measured,
    );
}

/// A session with the configured context (see `ContextSize::resolve`).
pub fn session(l: &Loaded, cfg: &ModelConfig) -> Result<Session> {
    session_seqs(l, cfg, 1, true)
}

/// A session of `n_seq` sequences sharing the configured context (`invariant`: see
/// `SessionParams::invariant`).
pub fn session_seqs(l: &Loaded, cfg: &ModelConfig, n_seq: u32, invariant: bool) -> Result<Session> {
    let hp = &l.model.hp;
    let n_ctx = cfg.n_ctx.resolve(hp.n_ctx_train);
    if n_ctx > hp.n_ctx_train && hp.n_ctx_train > 0 {
        log::warn!(
            "context {n_ctx} is larger than the model's training context {}",
            hp.n_ctx_train
        );
    }
    let params = SessionParams {
        n_ctx,
        n_ubatch: cfg.n_ubatch.min(n_ctx),
        n_threads: cfg.n_threads,
        type_k: cfg.type_k,
        type_v: cfg.type_v,
        flash_attn: cfg.flash_attn,
        swa_full: cfg.swa_full,
        n_seq,
        invariant,
        snapshots: 2,
    };
    let s = Session::new(l.model.clone(), params).context("creating the evaluation session")?;
    // every sequence's cache alike: the first one's bytes, times the sequences
    let one = s.kv().bytes();
    let n = s.n_seq() as u64;
    let kv = crate::kv::KvBytes {
        k: one.k * n,
        v: one.v * n,
    };
    let per = |b: u64| b / n / s.n_ctx().max(1) as u64;
    let what = if n > 1 {
        format!("{n} sequences of {} tokens", s.n_ctx())
    } else {
        format!("{n_ctx} tokens")
    };
    log::info!(
        "KV cache for {what}: K {} {} bytes/token, {} bytes ({:.2} MiB); V {} {} bytes/token, {} bytes ({:.2} MiB); total {:.2} MiB",
        cfg.type_k,
        per(kv.k),
        kv.k,
        kv.k as f64 / 1048576.0,
        cfg.type_v,
        per(kv.v),
        kv.v,
        kv.v as f64 / 1048576.0,
        (kv.k + kv.v) as f64 / 1048576.0,
    );
    let cells = &s.kv().cells;
    if let Some(window) = cells.window() {
        log::info!(
            "sliding-window layers (window {window}) hold {} cells{}",
            cells.ring(),
            crate::kv::ring_note(cells.ring(), cells.size())
        );
    }
    if let Some(rs) = s.kv().recurrent() {
        let one = rs.shape.bytes_per_copy();
        log::info!(
            "recurrent states (Gated DeltaNet): {} layers keep a state instead of K and V, {:.2} MiB per copy; \
             {} copies per sequence (the current state and the ones before the last tokens of a micro-batch: \
             a rollback within it needs no re-evaluation), {:.2} MiB; a checkpoint (at most {} per sequence, \
             each {:.2} MiB, the state at the end of each prompt and one token before) lets the next prompt \
             that shares it (a chat's next turn, --prompt-cache) start there",
            rs.shape.n_recurrent(),
            one as f64 / 1048576.0,
            rs.slots(),
            (one * rs.slots() as u64 * n) as f64 / 1048576.0,
            crate::kv::recurrent::MAX_CHECKPOINTS,
            (2 * one) as f64 / 1048576.0,
        );
    }
    let rot = |r: Option<u32>| r.map_or("none".to_string(), |n| n.to_string());
    log::info!(
        "flash attention {}; Hadamard rotation K {}, V {}; compute buffer {:.1} MiB, {} threads",
        cfg.flash_attn_why,
        rot(s.kv().k_rot_size()),
        rot(s.kv().v_rot_size()),
        s.compute_buffer_bytes() as f64 / 1048576.0,
        cfg.n_threads
    );
    Ok(s)
}

/// Sorted counts as ranges: `[7, 8, 13, 14]` → "7-8, 13-14".
fn ranges(ns: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ns.len() {
        let mut j = i;
        while j + 1 < ns.len() && ns[j + 1] == ns[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            ns[i].to_string()
        } else {
            format!("{}-{}", ns[i], ns[j])
        });
        i = j + 1;
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_read_as_ranges() {
        assert_eq!(super::ranges(&[7, 8, 13, 14, 15, 20]), "7-8, 13-15, 20");
        assert_eq!(super::ranges(&[3]), "3");
        assert_eq!(super::ranges(&[]), "");
    }
}
