//! `ember bench`: llama-bench's tests with its semantics, so figures compare one to one.
//!
//! * `ppN`: N prompt tokens (BOS first where the vocabulary adds one, then random ids) from an
//!   empty cache, in batches of `-b`, micro-batches of `-ub`; logits of the last token only.
//! * `tgN`: N tokens decoded one at a time from an empty cache (BOS, then random ids); no
//!   sampling.
//!
//! Each test gets its own session with a context of exactly its tokens (as llama-bench sizes
//! it), one warm-up run, then `-r` timed runs from a cleared cache; t/s is the mean over runs
//! ± the sample standard deviation. Tokenization, sampling and session set-up are excluded.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context as _, Result};
use serde_json::json;

use crate::cli::args::{BenchArgs, BenchOutput};
use crate::cli::config::{cache_type, flash_attn_choice, ContextSize, ModelConfig, UsageError};
use crate::generate::{Session, Want};
use crate::ggml::Type;
use crate::model::tune::TuneMode;
use crate::model::LoadOptions;
use crate::sampling::{Sampler, SamplingParams};

use super::load::{self, Loaded};

/// One measured test.
struct Record {
    model: String,
    size: u64,
    n_params: u64,
    threads: usize,
    type_k: Type,
    type_v: Type,
    flash_attn: bool,
    n_prompt: u32,
    n_gen: u32,
    samples_ns: Vec<u64>,
    /// Weight and KV bytes a generated token reads (generation tests).
    bytes_per_token: u64,
    /// The machine's measured read bandwidth, bytes/s (generation tests).
    bandwidth: f64,
}

impl Record {
    fn test(&self) -> String {
        if self.n_prompt > 0 {
            format!("pp{}", self.n_prompt)
        } else {
            format!("tg{}", self.n_gen)
        }
    }

    fn samples_ts(&self) -> Vec<f64> {
        let n = (self.n_prompt + self.n_gen) as f64;
        self.samples_ns
            .iter()
            .map(|&ns| n * 1e9 / ns as f64)
            .collect()
    }

    /// Mean and sample standard deviation of tokens per second.
    fn ts(&self) -> (f64, f64) {
        mean_sd(&self.samples_ts())
    }

    /// Milliseconds: to the first token (prompt tests) or per token (generation tests).
    fn ms(&self) -> f64 {
        let ns: Vec<f64> = self.samples_ns.iter().map(|&n| n as f64).collect();
        let per = if self.n_prompt > 0 {
            1
        } else {
            self.n_gen.max(1)
        };
        mean_sd(&ns).0 / 1e6 / per as f64
    }

    /// Percentage of the bandwidth roof a generation test reached.
    fn bw_pct(&self) -> Option<f64> {
        (self.n_gen > 0 && self.bandwidth > 0.0)
            .then(|| 100.0 * self.bytes_per_token as f64 * self.ts().0 / self.bandwidth)
    }

    fn json(&self) -> serde_json::Value {
        let (avg, sd) = self.ts();
        let ns: Vec<f64> = self.samples_ns.iter().map(|&n| n as f64).collect();
        let (avg_ns, sd_ns) = mean_sd(&ns);
        let mut extra = json!({});
        if self.n_prompt > 0 {
            extra["ttft_ms"] = json!(self.ms());
        } else {
            extra["tpot_ms"] = json!(self.ms());
            extra["bytes_per_token"] = json!(self.bytes_per_token);
            extra["bandwidth_gbs"] = json!(self.bandwidth / 1e9);
            extra["bw_pct"] = json!(self.bw_pct());
        }
        let mut v = json!({
            "model_filename": self.model, "model_size": self.size, "model_n_params": self.n_params,
            "n_threads": self.threads, "type_k": self.type_k.name(), "type_v": self.type_v.name(),
            "flash_attn": self.flash_attn, "n_prompt": self.n_prompt, "n_gen": self.n_gen,
            "test": self.test(), "avg_ns": avg_ns.round() as u64, "stddev_ns": sd_ns.round() as u64,
            "avg_ts": avg, "stddev_ts": sd, "samples_ns": self.samples_ns,
            "samples_ts": self.samples_ts(),
        });
        if let (Some(v), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            v.extend(e.clone());
        }
        v
    }
}

pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let mean = v.iter().sum::<f64>() / n;
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (mean, sd)
}

/// One combination of the list-valued settings.
pub(super) struct Setting {
    pub(super) threads: usize,
    pub(super) type_k: Type,
    pub(super) type_v: Type,
    pub(super) flash_attn: bool,
    pub(super) flash_attn_why: &'static str,
}

impl Setting {
    /// `base` with this setting's threads, cache types and attention, and context `n_ctx`.
    pub(super) fn config(&self, base: &ModelConfig, n_ctx: u32) -> ModelConfig {
        ModelConfig {
            n_ctx: ContextSize::exactly(n_ctx),
            n_threads: self.threads,
            type_k: self.type_k,
            type_v: self.type_v,
            flash_attn: self.flash_attn,
            flash_attn_why: self.flash_attn_why,
            ..base.clone()
        }
    }
}

/// A model's name in the tables: its file name without `.gguf`.
pub(super) fn model_name(path: &std::path::Path) -> String {
    path.file_stem().map_or_else(
        || path.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}

/// The model settings of `ember bench` for model `path` (context and setting filled in per test).
pub(super) fn base_config(a: &BenchArgs, path: &std::path::Path) -> ModelConfig {
    ModelConfig {
        path: path.to_path_buf(),
        n_ctx: ContextSize::Trained,
        n_threads: 1,
        n_batch: a.batch_size,
        n_ubatch: a.ubatch_size.min(a.batch_size),
        type_k: Type::F16,
        type_v: Type::F16,
        flash_attn: true,
        flash_attn_why: "",
        swa_full: false,
        load: LoadOptions {
            mmap: true,
            repack: !a.no_repack,
            offload: a.devices.request(),
            // routes are tuned for the most threads a test uses
            tune: TuneMode::from_flags(a.no_tune),
            threads: a
                .threads
                .iter()
                .copied()
                .max()
                .unwrap_or_else(default_threads),
        },
        mlock: false,
        verbose: a.verbose,
    }
}

/// `-t`'s default: the available cores.
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get())
}

pub(super) fn settings(a: &BenchArgs) -> Result<Vec<Setting>, UsageError> {
    let threads = if a.threads.is_empty() {
        vec![default_threads()]
    } else {
        a.threads.clone()
    };
    if threads.contains(&0) {
        return Err(UsageError("--threads must be at least 1".into()));
    }
    if a.reps == 0 || a.batch_size == 0 || a.ubatch_size == 0 {
        return Err(UsageError(
            "--repetitions, --batch-size and --ubatch-size must be positive".into(),
        ));
    }
    let mut out = Vec::new();
    for &t in &threads {
        for k in &a.cache_type_k {
            let type_k = cache_type("--cache-type-k", k)?;
            for v in &a.cache_type_v {
                let type_v = cache_type("--cache-type-v", v)?;
                for &fa in &a.flash_attn {
                    let (flash_attn, flash_attn_why) = flash_attn_choice(fa, type_v)?;
                    out.push(Setting {
                        threads: t,
                        type_k,
                        type_v,
                        flash_attn,
                        flash_attn_why,
                    });
                }
            }
        }
    }
    Ok(out)
}

pub fn run(a: &BenchArgs) -> Result<()> {
    let settings = settings(a)?;
    if !a.n_parallel.is_empty() {
        return super::bench_batched::run(a, &settings);
    }
    let tests: Vec<(u32, u32)> = a
        .n_prompt
        .iter()
        .filter(|&&n| n > 0)
        .map(|&n| (n, 0))
        .chain(a.n_gen.iter().filter(|&&n| n > 0).map(|&n| (0, n)))
        .collect();
    if tests.is_empty() {
        return Err(UsageError("nothing to measure: every -p and -n is 0".into()).into());
    }
    let mut out = std::io::stdout().lock();
    let mut records = Vec::new();
    if a.output == BenchOutput::Md {
        writeln!(
            out,
            "| model | size | params | threads | type_k | type_v | fa | test | t/s | ms | bw % |"
        )?;
        writeln!(
            out,
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        )?;
    } else if a.output == BenchOutput::Csv {
        writeln!(out, "model_filename,model_size,model_n_params,n_threads,type_k,type_v,flash_attn,n_prompt,n_gen,test,avg_ts,stddev_ts,ms,bw_pct")?;
    }
    // The bandwidth roof, measured once per thread count, only for generation tests.
    let mut bandwidths = super::bench_roof::Bandwidths::new(TuneMode::from_flags(a.no_tune));
    for path in &a.models {
        let base = base_config(a, path);
        let loaded = load::load(&base)?;
        let name = super::bench::model_name(path);
        let (size, n_params) = model_size(&loaded);
        for s in &settings {
            for &(n_prompt, n_gen) in &tests {
                let cfg = s.config(&base, n_prompt + n_gen);
                let mut session = load::session(&loaded, &cfg)?;
                let mut rng = Rand(0x5eed_1234_abcd_0001);
                let mut outside = std::time::Duration::ZERO;
                let mut run = |session: &mut Session, rng: &mut Rand| -> Result<u64> {
                    session.clear();
                    let t0 = Instant::now();
                    if n_prompt > 0 {
                        prompt(session, &loaded, n_prompt, a.batch_size, rng)?;
                    } else {
                        generate(session, &loaded, n_gen, rng, &mut outside)?;
                    }
                    Ok(t0.elapsed().as_nanos() as u64)
                };
                if !a.no_warmup {
                    run(&mut session, &mut rng).context("warm-up run")?;
                }
                let mut samples_ns = Vec::new();
                for _ in 0..a.reps {
                    samples_ns.push(run(&mut session, &mut rng)?);
                }
                if n_gen > 0 && n_prompt == 0 {
                    let runs = a.reps + u32::from(!a.no_warmup);
                    let total: u64 = samples_ns.iter().sum();
                    let per_token = outside / (runs * n_gen).max(1);
                    log::info!(
                        "tg{n_gen}: sampling and detokenizing {:.1} µs per token, {:.2}% of the decode time",
                        per_token.as_secs_f64() * 1e6,
                        100.0 * per_token.as_secs_f64() * (a.reps * n_gen) as f64
                            / (total as f64 / 1e9).max(1e-9)
                    );
                }
                let (bytes_per_token, bandwidth) = if n_gen > 0 {
                    let bw = bandwidths.get(s.threads);
                    let kv = session.kv().bytes();
                    let per_cell = (kv.k + kv.v) / session.n_ctx().max(1) as u64;
                    let experts =
                        (loaded.model.hp.moe.as_ref()).map(|m| (m.n_expert_used, m.n_expert));
                    let bytes =
                        super::bench_roof::weight_bytes_per_token(&loaded.model.file, experts)
                            + super::bench_roof::kv_bytes_per_token(
                                n_gen,
                                session.n_ctx(),
                                per_cell,
                            );
                    (bytes, bw)
                } else {
                    (0, 0.0)
                };
                let r = Record {
                    model: name.clone(),
                    size,
                    n_params,
                    threads: s.threads,
                    type_k: s.type_k,
                    type_v: s.type_v,
                    flash_attn: s.flash_attn,
                    n_prompt,
                    n_gen,
                    samples_ns,
                    bytes_per_token,
                    bandwidth,
                };
                print_record(&mut out, a.output, &r)?;
                records.push(r);
            }
        }
    }
    if a.output == BenchOutput::Json {
        let all: Vec<_> = records.iter().map(Record::json).collect();
        serde_json::to_writer_pretty(&mut out, &all)?;
        writeln!(out)?;
    }
    Ok(())
}

fn print_record(out: &mut dyn Write, fmt: BenchOutput, r: &Record) -> std::io::Result<()> {
    let (avg, sd) = r.ts();
    match fmt {
        BenchOutput::Md => writeln!(
            out,
            "| {} | {:.2} MiB | {:.2} M | {} | {} | {} | {} | {} | {avg:.2} ± {sd:.2} | {:.2} | {} |",
            r.model,
            r.size as f64 / 1048576.0,
            r.n_params as f64 / 1e6,
            r.threads,
            r.type_k,
            r.type_v,
            u8::from(r.flash_attn),
            r.test(),
            r.ms(),
            r.bw_pct().map_or("-".to_string(), |p| format!("{p:.1}"))
        )?,
        BenchOutput::Csv => writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{avg:.6},{sd:.6},{:.4},{}",
            r.model,
            r.size,
            r.n_params,
            r.threads,
            r.type_k,
            r.type_v,
            u8::from(r.flash_attn),
            r.n_prompt,
            r.n_gen,
            r.test(),
            r.ms(),
            r.bw_pct().map_or(String::new(), |p| format!("{p:.2}"))
        )?,
        BenchOutput::Jsonl => writeln!(out, "{}", r.json())?,
        BenchOutput::Json => {}
    }
    out.flush()
}

/// Bytes and parameters of the model's tensors.
pub(super) fn model_size(l: &Loaded) -> (u64, u64) {
    let tensors = l.model.file.tensors();
    let size = tensors.iter().map(|t| t.size).sum();
    let params = tensors.iter().map(|t| t.dims.iter().product::<u64>()).sum();
    (size, params)
}

/// A small deterministic generator for benchmark token ids (llama-bench uses `rand()`).
pub(super) struct Rand(pub(super) u64);

impl Rand {
    pub(super) fn below(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as u32
    }
}

fn first_token(l: &Loaded, rng: &mut Rand) -> u32 {
    match l.tokenizer.bos() {
        Some(b) if l.tokenizer.add_bos() => b,
        _ => rng.below(l.model.hp.n_vocab),
    }
}

fn prompt(s: &mut Session, l: &Loaded, n: u32, n_batch: u32, rng: &mut Rand) -> Result<()> {
    let n_vocab = l.model.hp.n_vocab;
    let mut done = 0;
    while done < n {
        let len = (n - done).min(n_batch);
        let tokens: Vec<u32> = (0..len)
            .map(|i| {
                if done == 0 && i == 0 {
                    first_token(l, rng)
                } else {
                    rng.below(n_vocab)
                }
            })
            .collect();
        s.eval(&tokens, Want::Last)?;
        done += len;
    }
    Ok(())
}

/// Generates `n` tokens as `ember -p` does, sampling included: each pass's logits go through
/// the default sampler chain (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05; a fixed seed)
/// and the token is detokenized, so the rate is what a user sees. `outside` gathers the time
/// spent outside the forward passes.
fn generate(
    s: &mut Session,
    l: &Loaded,
    n: u32,
    rng: &mut Rand,
    outside: &mut std::time::Duration,
) -> Result<()> {
    let mut sampler = Sampler::new(SamplingParams {
        seed: 42,
        ..SamplingParams::default()
    });
    let mut text: Vec<u8> = Vec::new();
    let mut token = first_token(l, rng);
    for _ in 0..n {
        let logits = s.eval(&[token], Want::Last)?;
        let t0 = Instant::now();
        token = sampler.sample(logits);
        sampler.commit(token);
        text.extend_from_slice(l.tokenizer.piece(token, false));
        *outside += t0.elapsed();
    }
    std::hint::black_box(text);
    Ok(())
}
