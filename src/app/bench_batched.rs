//! `ember bench -npl 1,2,4,8,16`: llama-batched-bench's test, line for line comparable. For
//! each prompt length `pp`, generation length `tg` and sequence count `pl`: `pl` prompts of
//! `pp` random tokens (each evaluated in the micro-batches it would have alone), then `tg`
//! steps of one token per sequence, all sequences in one micro-batch. Columns as
//! llama-batched-bench's: `S_PP` = pl·pp / T_PP, `S_TG` = pl·tg / T_TG, `S` = N_KV / T; then
//! where generation stands against this machine's roofs: `bw %`, the bytes a step reads
//! (every weight once, each sequence's attended KV cells) per second as a share of the
//! measured read bandwidth, and `GOPS`, the matrix operations done per second (2 per weight
//! per token). Decoding one sequence sits near the bandwidth roof; as sequences are added the
//! weights are shared and `bw %` falls while `GOPS` climbs, until the kernels' compute bounds
//! it: where `S_TG` flattens.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context as _, Result};
use serde_json::json;

use crate::cli::args::{BenchArgs, BenchOutput};
use crate::cli::config::UsageError;
use crate::generate::{Session, Want};
use crate::kv::KV_PAD;

use super::bench::{base_config, Rand, Setting};
use super::load::{self, Loaded};

/// One measured combination.
struct Line {
    model: String,
    threads: usize,
    invariant: bool,
    pp: u32,
    tg: u32,
    pl: u32,
    t_pp: f64,
    t_tg: f64,
    /// Bytes one generation step reads, the read bandwidth (bytes/s), and operations per
    /// generated token; bytes of weights one prompt micro-batch reads, and its tokens.
    step_bytes: u64,
    weight_bytes: u64,
    ub_tokens: u32,
    bandwidth: f64,
    ops_per_token: f64,
}

impl Line {
    fn n_kv(&self) -> u32 {
        self.pl * (self.pp + self.tg)
    }
    fn s_pp(&self) -> f64 {
        rate((self.pl * self.pp) as f64, self.t_pp)
    }
    fn s_tg(&self) -> f64 {
        rate((self.pl * self.tg) as f64, self.t_tg)
    }
    fn s(&self) -> f64 {
        rate(self.n_kv() as f64, self.t_pp + self.t_tg)
    }
    fn bw_pct(&self) -> f64 {
        100.0 * rate(self.step_bytes as f64 * self.tg as f64, self.t_tg) / self.bandwidth.max(1.0)
    }
    fn gops(&self) -> f64 {
        self.s_tg() * self.ops_per_token / 1e9
    }
}

/// Bytes a generation step of `pl` sequences reads, each with a prompt of `pp` and `tg`
/// steps (the mean over the steps): the weights once, the attended KV cells of each.
fn step_bytes(l: &Loaded, s: &Session, pp: u32, tg: u32) -> u64 {
    let kv = s.seq_kv(0).bytes();
    let per_cell = (kv.k + kv.v) / s.n_ctx().max(1) as u64;
    let cells: u64 = (1..=tg.max(1))
        .map(|i| ((pp + i).div_ceil(KV_PAD) * KV_PAD).min(s.n_ctx()) as u64)
        .sum::<u64>()
        / tg.max(1) as u64;
    super::bench_roof::weight_bytes_per_token(&l.model.file, experts_read(l, s.n_seq()))
        + s.n_seq() as u64 * cells * per_cell
}

/// Of a mixture of experts, how many of its experts `n` tokens read (used, total): the
/// expected number of distinct experts when each token picks `used` of `total` at random.
fn experts_read(l: &Loaded, n: usize) -> Option<(u32, u32)> {
    let m = l.model.hp.moe.as_ref()?;
    let (used, total) = (m.n_expert_used as f64, m.n_expert.max(1) as f64);
    let distinct = total * (1.0 - (1.0 - used / total).powi(n as i32));
    Some((distinct.round().clamp(used, total) as u32, m.n_expert))
}

/// Multiply-adds are two operations: two per weight of every matrix a token goes through
/// (the token embedding only when it is also the output; of experts, the ones it uses).
fn ops_per_token(l: &Loaded) -> f64 {
    let f = &l.model.file;
    let tied = f.tensor("output.weight").is_none();
    let active = l
        .model
        .hp
        .moe
        .as_ref()
        .map_or(1.0, |m| m.n_expert_used as f64 / m.n_expert.max(1) as f64);
    let params: f64 = f
        .tensors()
        .iter()
        .filter(|t| t.dims.len() >= 2 && (t.name != "token_embd.weight" || tied))
        .map(|t| {
            let n = t.dims.iter().product::<u64>() as f64;
            // of a stack of experts, a token goes through the ones it is routed to
            if t.name.contains("_exps.") {
                n * active
            } else {
                n
            }
        })
        .sum();
    2.0 * params
}

fn rate(n: f64, secs: f64) -> f64 {
    if secs > 0.0 {
        n / secs
    } else {
        0.0
    }
}

pub(super) fn run(a: &BenchArgs, settings: &[Setting]) -> Result<()> {
    if a.n_parallel.contains(&0) || a.n_pp.contains(&0) {
        return Err(UsageError("-npl and -npp must be positive".into()).into());
    }
    let mut out = std::io::stdout().lock();
    match a.output {
        BenchOutput::Md => {
            writeln!(out, "| model | threads | inv | PP | TG | B | N_KV | T_PP s | S_PP t/s | T_TG s | S_TG t/s | T s | S t/s | bw % | GOPS |")?;
            writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")?;
        }
        BenchOutput::Csv => writeln!(
            out,
            "model,n_threads,invariant,pp,tg,pl,n_kv,t_pp,speed_pp,t_tg,speed_tg,t,speed,bw_pct,gops"
        )?,
        BenchOutput::Json | BenchOutput::Jsonl => {}
    }
    let mut lines = Vec::new();
    let mut bandwidths =
        super::bench_roof::Bandwidths::new(crate::model::tune::TuneMode::from_flags(a.no_tune));
    for path in &a.models {
        let base = base_config(a, path);
        let loaded = load::load(&base)?;
        let name = super::bench::model_name(path);
        for s in settings {
            let bandwidth = bandwidths.get(s.threads);
            for &pp in &a.n_pp {
                for &tg in &a.n_tg {
                    for (&pl, inv) in pls(a) {
                        // every sequence holds its prompt and generation, in whole 256s
                        let per = (pp + tg).div_ceil(KV_PAD).max(1) * KV_PAD;
                        let cfg = s.config(&base, per * pl);
                        let mut session = load::session_seqs(&loaded, &cfg, pl, inv)?;
                        let mut rng = Rand(0x5eed_1234_abcd_0001);
                        if !a.no_warmup {
                            once(&mut session, &loaded, pp.min(16), tg.min(4), &mut rng)
                                .context("warm-up run")?;
                        }
                        let (t_pp, t_tg) = once(&mut session, &loaded, pp, tg, &mut rng)?;
                        let l = Line {
                            model: name.clone(),
                            threads: s.threads,
                            invariant: inv,
                            pp,
                            tg,
                            pl,
                            t_pp,
                            t_tg,
                            step_bytes: step_bytes(&loaded, &session, pp, tg),
                            weight_bytes: super::bench_roof::weight_bytes_per_token(
                                &loaded.model.file,
                                experts_read(&loaded, pp.min(cfg.n_ubatch) as usize),
                            ),
                            ub_tokens: pp.min(cfg.n_ubatch),
                            bandwidth,
                            ops_per_token: ops_per_token(&loaded),
                        };
                        print_line(&mut out, a.output, &l)?;
                        lines.push(l);
                    }
                }
            }
        }
    }
    if a.output == BenchOutput::Json {
        let all: Vec<_> = lines.iter().map(json_line).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
    }
    if let (Some(path), Some(first)) = (&a.plot, lines.first()) {
        plot(path, &lines, first)?;
    }
    Ok(())
}

/// The roofline of the machine (with the first test's thread count) and every test's decode
/// and prompt points.
fn plot(path: &std::path::Path, lines: &[Line], first: &Line) -> Result<()> {
    let threads = first.threads;
    let peak = crate::ggml::kernels::int8_peak_ops(threads)
        .context("the compute roof needs a CPU with AVX-512 VNNI")?;
    log::info!("int8 peak with {threads} threads: {:.0} GOPS", peak / 1e9);
    let mut points = Vec::new();
    let one_model = lines.iter().all(|l| l.model == first.model);
    for l in lines.iter().filter(|l| l.threads == threads) {
        let inv = if l.invariant { "" } else { " (invariance off)" };
        let model = if one_model {
            String::new()
        } else {
            format!("{} ", l.model)
        };
        points.push(super::bench_plot::Point {
            series: format!("{model}decode{inv}"),
            intensity: l.ops_per_token * l.pl as f64 / l.step_bytes.max(1) as f64,
            ops: l.gops() * 1e9,
        });
        points.push(super::bench_plot::Point {
            series: format!("{model}prompt"),
            intensity: l.ops_per_token * l.ub_tokens as f64 / l.weight_bytes.max(1) as f64,
            ops: l.s_pp() * l.ops_per_token,
        });
    }
    let title = format!(
        "{}, {threads} threads, {:.1} GB/s read, {:.0} int8 GOPS peak",
        if one_model {
            first.model.as_str()
        } else {
            "roofline"
        },
        first.bandwidth / 1e9,
        peak / 1e9
    );
    super::bench_plot::write(path, &title, first.bandwidth, peak, &points)
}

/// Each sequence count with each invariance setting (a count of one only once: it has no
/// batch to be invariant to).
fn pls(a: &BenchArgs) -> Vec<(&u32, bool)> {
    let mut v = Vec::new();
    for pl in &a.n_parallel {
        for (i, inv) in a.invariant.iter().enumerate() {
            if *pl > 1 || i == 0 {
                v.push((pl, inv == "on"));
            }
        }
    }
    v
}

/// One run: every sequence's prompt, then `tg` steps of all sequences; seconds of each phase.
fn once(s: &mut Session, l: &Loaded, pp: u32, tg: u32, rng: &mut Rand) -> Result<(f64, f64)> {
    let n_vocab = l.model.hp.n_vocab;
    let pl = s.n_seq();
    for slot in 0..pl {
        s.clear_seq(slot);
    }
    let prompts: Vec<Vec<u32>> = (0..pl)
        .map(|_| (0..pp).map(|_| rng.below(n_vocab)).collect())
        .collect();
    let t0 = Instant::now();
    for (slot, p) in prompts.iter().enumerate() {
        s.eval_seq(slot, p, Want::Last)?;
    }
    let t_pp = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    for _ in 0..tg {
        let steps: Vec<(usize, u32)> = (0..pl).map(|slot| (slot, rng.below(n_vocab))).collect();
        s.decode_step(&steps)?;
    }
    Ok((t_pp, t1.elapsed().as_secs_f64()))
}

fn print_line(out: &mut dyn Write, fmt: BenchOutput, l: &Line) -> std::io::Result<()> {
    let inv = if l.invariant { "on" } else { "off" };
    let (head, sep, end) = match fmt {
        BenchOutput::Md => ("| ", " | ", " |"),
        BenchOutput::Csv => ("", ",", ""),
        BenchOutput::Jsonl => return writeln!(out, "{}", json_line(l)),
        BenchOutput::Json => return Ok(()),
    };
    let inv = if fmt == BenchOutput::Csv {
        l.invariant.to_string()
    } else {
        inv.to_string()
    };
    let fields = [
        l.model.clone(),
        l.threads.to_string(),
        inv,
        l.pp.to_string(),
        l.tg.to_string(),
        l.pl.to_string(),
        l.n_kv().to_string(),
        format!("{:.3}", l.t_pp),
        format!("{:.2}", l.s_pp()),
        format!("{:.3}", l.t_tg),
        format!("{:.2}", l.s_tg()),
        format!("{:.3}", l.t_pp + l.t_tg),
        format!("{:.2}", l.s()),
        format!("{:.1}", l.bw_pct()),
        format!("{:.1}", l.gops()),
    ];
    writeln!(out, "{head}{}{end}", fields.join(sep))
}

/// llama-batched-bench's JSONL keys, with the model's name.
fn json_line(l: &Line) -> serde_json::Value {
    json!({
        "model": l.model, "n_threads": l.threads, "invariant": l.invariant, "pp": l.pp, "tg": l.tg, "pl": l.pl,
        "n_kv": l.n_kv(), "t_pp": l.t_pp, "speed_pp": l.s_pp(), "t_tg": l.t_tg,
        "speed_tg": l.s_tg(), "t": l.t_pp + l.t_tg, "speed": l.s(),
        "step_bytes": l.step_bytes, "bandwidth_gbs": l.bandwidth / 1e9, "bw_pct": l.bw_pct(),
        "gops": l.gops(),
    })
}
