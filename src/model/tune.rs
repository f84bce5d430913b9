//! Kernel routes by measurement: where Ember has a kernel of its own for a weight and ggml has
//! one too (the decode ops against ggml's matrix × vector product, the tile and K-quant prompt
//! ops against its matrix × matrix one), both are timed on this machine, on the model's own
//! weights of each shape, at the thread count in use, and the faster kept. Every kernel gives
//! ggml's bits, so the choice changes speed only.
//!
//! Decisions are cached per CPU, build, thread count and shape in `tune.json` under the user's
//! cache directory (`$EMBER_TUNE_FILE` names another file), so a model is measured once per
//! machine: a few tens of milliseconds per distinct shape. `--no-tune` (or `EMBER_TUNE=off`)
//! keeps Ember's kernels wherever they run; `EMBER_TUNE=refresh` measures again. A debug build
//! tunes only when `EMBER_TUNE=on` or `refresh` asks.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::ggml::kernels::tune::{time_kernel, COLD_BYTES};
use crate::ggml::kernels::{Machine, Placement, Tunable};
use crate::ggml::{Backend, TensorHandle, Type};

/// Whether routes are tuned at load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TuneMode {
    /// Ember's kernels wherever they run (`--no-tune`, `EMBER_TUNE=off`; and library loads).
    #[default]
    Off,
    /// Measured once per machine and shape, then read from the cache file.
    Cached,
    /// Measured again, the cache file updated (`EMBER_TUNE=refresh`).
    Refresh,
}

impl TuneMode {
    /// The mode the command line and the environment (`EMBER_TUNE`) ask for.
    pub fn from_flags(no_tune: bool) -> TuneMode {
        match crate::switches::Switches::get().tune {
            _ if no_tune => TuneMode::Off,
            Some(m) => m,
            // Ember's kernels unoptimized against ggml's optimized C: timing them decides
            // nothing (and the tests, which run a debug build, stay deterministic)
            None if cfg!(debug_assertions) => TuneMode::Off,
            None => TuneMode::Cached,
        }
    }
}

/// Ember's kernel is kept unless ggml's is faster by more than this fraction (timings of equal
/// kernels differ by a few percent from pass to pass).
const MARGIN: f64 = 0.03;

/// Weights alike holding fewer bytes than this in all are not timed (Ember's kernels kept):
/// what they cost cannot matter much, and their timings are the least steady.
const MIN_BYTES: usize = 4 << 20;

/// Passes per kernel (after a warm-up).
const REPS: usize = 3;

/// One choice, timed or read from the cache.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub tunable: Tunable,
    pub ember_us: f64,
    pub ggml_us: f64,
}

impl Verdict {
    /// ggml's matmul is faster by more than the margin.
    pub fn ggml_wins(&self) -> bool {
        self.ggml_us < self.ember_us * (1.0 - MARGIN)
    }

    /// e.g. `decode@1 0.41 ms vs ggml 0.52 ms`.
    pub fn describe(&self) -> String {
        format!(
            "{}@{}{} {:.3} ms vs ggml {:.3} ms{}",
            self.tunable.kernel.name(),
            self.tunable.probe,
            if self.tunable.cold { " cold" } else { "" },
            self.ember_us / 1e3,
            self.ggml_us / 1e3,
            if self.ggml_wins() { ": ggml" } else { "" }
        )
    }
}

/// Weights alike, as far as a kernel's speed goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    pub ty: Type,
    /// [columns, rows]
    pub ne: [i64; 2],
    pub repacked: bool,
}

impl Shape {
    fn key(&self, t: &Tunable) -> String {
        format!(
            "{} {}x{}{} {}@{}{}",
            self.ty.name(),
            self.ne[0],
            self.ne[1],
            if self.repacked { " repacked" } else { "" },
            t.kernel.name(),
            t.probe,
            if t.cold { " cold" } else { "" }
        )
    }
}

/// What tuning found, for `-v`.
#[derive(Clone, Debug, Default)]
pub struct TuneReport {
    pub verdicts: HashMap<Shape, Vec<Verdict>>,
    /// Choices measured now, and how long measuring took.
    pub measured: usize,
    /// Of those, timings whose passes were too uneven (a busy moment) or whose kernels differed
    /// implausibly, taken a second time.
    pub unsteady: usize,
    pub took: Duration,
    pub file: Option<PathBuf>,
}

/// The weights of a model to tune: each matrix's handle, shape and choices.
pub struct Candidate {
    pub handle: TensorHandle,
    pub shape: Shape,
    pub tunables: Vec<Tunable>,
}

/// Decides, for each shape among `candidates`, every choice between Ember's kernel and ggml's:
/// from the cache file, or by timing (`weight(h)` gives a handle's tensor) with `threads`
/// threads. Returns the choices ggml won, by handle, and the report.
pub fn tune<'a>(
    candidates: &[Candidate],
    weight: impl Fn(TensorHandle) -> crate::ggml::Tensor<'a>,
    threads: usize,
    mode: TuneMode,
) -> (HashMap<TensorHandle, Vec<Tunable>>, TuneReport) {
    let mut report = TuneReport::default();
    let mut refused: HashMap<TensorHandle, Vec<Tunable>> = HashMap::new();
    if mode == TuneMode::Off || candidates.iter().all(|c| c.tunables.is_empty()) {
        return (refused, report);
    }
    let start = Instant::now();
    let file = cache_file();
    let machine = machine_key(threads);
    let cache = match (&file, mode) {
        (Some(f), TuneMode::Cached) => CacheFile::read(f),
        _ => CacheFile::default(),
    };
    // in binding order
    let mut shapes: Vec<(Shape, Vec<&Candidate>)> = Vec::new();
    for c in candidates.iter().filter(|c| !c.tunables.is_empty()) {
        match shapes.iter_mut().find(|(s, _)| *s == c.shape) {
            Some((_, m)) => m.push(c),
            None => shapes.push((c.shape.clone(), vec![c])),
        }
    }
    let mut backend = None;
    let mut fresh = BTreeMap::new();
    for (shape, members) in &shapes {
        let bytes: usize = members.iter().map(|m| weight(m.handle).nbytes()).sum();
        if bytes < MIN_BYTES {
            continue;
        }
        let mut verdicts = Vec::new();
        for t in &members[0].tunables {
            let key = shape.key(t);
            let known = cache.entries.get(&machine).and_then(|m| m.get(&key));
            let e = match known {
                Some(e) => e.clone(),
                None => {
                    let b = match &mut backend {
                        Some(b) => b,
                        None => match Backend::cpu(threads) {
                            Ok(b) => backend.insert(b),
                            Err(e) => {
                                log::warn!("kernel tuning skipped: {e}");
                                return (refused, report);
                            }
                        },
                    };
                    match measure(b, &pick(members, t, &weight), t, &mut report) {
                        Ok(e) => {
                            fresh.insert(key, e.clone());
                            e
                        }
                        Err(e) => {
                            log::warn!("kernel tuning of {key} failed: {e}");
                            continue;
                        }
                    }
                }
            };
            verdicts.push(Verdict {
                tunable: t.clone(),
                ember_us: e.ember_us,
                ggml_us: e.ggml_us,
            });
        }
        for t in losers(&verdicts) {
            for m in members {
                refused.entry(m.handle).or_default().push(t.clone());
            }
        }
        report.verdicts.insert(shape.clone(), verdicts);
    }
    report.took = start.elapsed();
    if let (Some(f), false) = (&file, fresh.is_empty()) {
        // Merge into what is there now (another process may have written since).
        let mut now = CacheFile::read(f);
        now.entries.entry(machine).or_default().extend(fresh);
        if let Err(e) = now.write(f) {
            log::warn!("kernel tuning: cannot write {}: {e}", f.display());
        }
    }
    report.file = file;
    (refused, report)
}

/// The choices to refuse among a shape's `verdicts`: each kernel ggml's matmul beats, and each
/// that another of Ember's kernels for the same columns beats (the decode op and the tile op
/// both take several columns of Q4_1, Q5_0 and Q8_0: the faster stays, against ggml's too).
fn losers(verdicts: &[Verdict]) -> Vec<&Tunable> {
    verdicts
        .iter()
        .filter(|v| {
            v.ggml_wins()
                || verdicts.iter().any(|o| {
                    o.tunable.cols == v.tunable.cols
                        && o.tunable.kernel != v.tunable.kernel
                        && o.ember_us < v.ember_us
                })
        })
        .map(|v| &v.tunable)
        .collect()
}

/// Times choice `t` on weights `ws`. A timing whose passes were uneven (a busy moment), or
/// whose two kernels differ more than [`IMPLAUSIBLE`] times (they do the same work: one was
/// slowed, say by a preempted core), is taken again, once, and each kernel keeps the faster of
/// its two times.
fn measure(
    b: &Backend,
    ws: &[crate::ggml::Tensor<'_>],
    t: &Tunable,
    report: &mut TuneReport,
) -> Result<Entry, crate::ggml::GgmlError> {
    let mut timing = time_kernel(b, ws, t.kernel, t.probe, t.cold, REPS)?;
    let ratio = timing.ember.as_secs_f64() / timing.ggml.as_secs_f64().max(1e-9);
    if !timing.steady || !(1.0 / IMPLAUSIBLE..=IMPLAUSIBLE).contains(&ratio) {
        report.unsteady += 1;
        let again = time_kernel(b, ws, t.kernel, t.probe, t.cold, REPS)?;
        timing.ember = timing.ember.min(again.ember);
        timing.ggml = timing.ggml.min(again.ggml);
    }
    report.measured += 1;
    Ok(Entry {
        ember_us: timing.ember.as_secs_f64() * 1e6,
        ggml_us: timing.ggml.as_secs_f64() * 1e6,
    })
}

/// How many times slower than the other one kernel's timing may be before it is taken again.
const IMPLAUSIBLE: f64 = 3.0;

/// The weights a choice is timed on: for a cold timing, weights alike until their bytes
/// exceed [`COLD_BYTES`] (the caches hold none of them); for a warm one, the first.
fn pick<'a>(
    members: &[&Candidate],
    t: &Tunable,
    weight: &impl Fn(TensorHandle) -> crate::ggml::Tensor<'a>,
) -> Vec<crate::ggml::Tensor<'a>> {
    let mut out = Vec::new();
    let mut bytes = 0;
    for m in members {
        let w = weight(m.handle);
        bytes += w.nbytes();
        out.push(w);
        if !t.cold || bytes >= COLD_BYTES {
            break;
        }
    }
    out
}

/// Whether a weight's placement leaves choices to tune (host memory or ggml's repack buffer).
pub fn tunable_placement(p: Placement) -> bool {
    matches!(p, Placement::Host | Placement::Repacked)
}

/// This CPU, this build and the thread count: decisions made under another do not apply.
fn machine_key(threads: usize) -> String {
    static CPU: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let cpu = CPU.get_or_init(|| {
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|n| n.trim().to_string())
            })
            .unwrap_or_else(|| std::env::consts::ARCH.to_string())
    });
    let m = Machine::get();
    let features = [
        ("avx2", m.avx2),
        ("vnni", m.vnni),
        ("avx512f", m.avx512f),
        ("kquant", m.k_quant),
        ("ggml-vnni", m.ggml_vnni),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(n, _)| *n)
    .collect::<Vec<_>>()
    .join(" ");
    format!(
        "{cpu} [{features}]; ember {} {}, ggml {}; {threads} threads",
        env!("EMBER_GIT_REV"),
        env!("EMBER_PROFILE"),
        env!("EMBER_GGML_VERSION"),
    )
}

/// A model with its cache settings, as its pass times are kept: the file's name and size,
/// the K and V cache types, flash attention.
pub fn model_key(path: &std::path::Path, type_k: Type, type_v: Type, flash_attn: bool) -> String {
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    format!(
        "{name} ({size} bytes); K {} V {}; fa {}",
        type_k.name(),
        type_v.name(),
        if flash_attn { "on" } else { "off" }
    )
}

/// The seconds a forward pass of `model` (a [`model_key`]) took on this machine with `threads`
/// threads, by batch size, as an earlier run measured them (none with tuning off or
/// refreshed).
pub fn pass_times(model: &str, threads: usize, mode: TuneMode) -> Vec<(usize, f64)> {
    let Some(f) = cache_file().filter(|_| mode == TuneMode::Cached) else {
        return Vec::new();
    };
    let c = CacheFile::read(&f);
    let Some(m) = c
        .passes
        .get(&machine_key(threads))
        .and_then(|m| m.get(model))
    else {
        return Vec::new();
    };
    let mut v: Vec<(usize, f64)> = m
        .iter()
        .filter_map(|(n, &s)| Some((n.parse().ok()?, s)))
        .filter(|&(n, s)| n >= 1 && s.is_finite() && s > 0.0)
        .collect();
    v.sort_by_key(|&(n, _)| n);
    v
}

/// Keeps `times` (batch size, seconds) as [`pass_times`] of `model` (nothing with tuning off).
pub fn save_pass_times(model: &str, threads: usize, mode: TuneMode, times: &[(usize, f64)]) {
    let Some(f) = cache_file().filter(|_| mode != TuneMode::Off && !times.is_empty()) else {
        return;
    };
    let mut c = CacheFile::read(&f);
    let m = c
        .passes
        .entry(machine_key(threads))
        .or_default()
        .entry(model.to_string())
        .or_default();
    for &(n, s) in times {
        m.insert(n.to_string(), s);
    }
    if let Err(e) = c.write(&f) {
        log::warn!("cannot write {}: {e}", f.display());
    }
}

/// The best of `measured` and what earlier runs measured of `name` on this machine with
/// `threads` threads (kept in the tune file: a roof such as the read bandwidth is the machine's,
/// and one run's probe may fall short of it); with tuning off, `measured`.
pub fn best_kept(name: &str, threads: usize, mode: TuneMode, measured: f64) -> f64 {
    let Some(f) = cache_file().filter(|_| mode != TuneMode::Off) else {
        return measured;
    };
    let mut c = CacheFile::read(&f);
    let m = c.best.entry(machine_key(threads)).or_default();
    let kept = match mode {
        TuneMode::Cached => m.get(name).copied().filter(|v| v.is_finite()),
        _ => None,
    };
    let best = kept.map_or(measured, |k| k.max(measured));
    if kept != Some(best) {
        m.insert(name.to_string(), best);
        if let Err(e) = c.write(&f) {
            log::warn!("cannot write {}: {e}", f.display());
        }
    }
    best
}

/// `$EMBER_TUNE_FILE`, else `tune.json` in `$XDG_CACHE_HOME/ember` or `~/.cache/ember`.
fn cache_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("EMBER_TUNE_FILE") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("ember").join("tune.json"))
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    ember_us: f64,
    ggml_us: f64,
}

/// The cache file: kernel timings by machine key, then by shape and choice; and models' pass
/// times by machine key, then by model, then by batch size.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    entries: BTreeMap<String, BTreeMap<String, Entry>>,
    #[serde(default)]
    passes: BTreeMap<String, BTreeMap<String, BTreeMap<String, f64>>>,
    /// Machine-wide figures kept at their best (the read bandwidth), by machine key.
    #[serde(default)]
    best: BTreeMap<String, BTreeMap<String, f64>>,
}

impl CacheFile {
    /// The file's contents; empty where it is missing or unreadable (it is only a cache).
    fn read(path: &std::path::Path) -> CacheFile {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Written whole to a temporary file, then renamed over the old one.
    fn write(&self, path: &std::path::Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ggml::kernels::Kernel;

    fn verdict(ember_us: f64, ggml_us: f64) -> Verdict {
        Verdict {
            tunable: Tunable {
                kernel: Kernel::Decode,
                cols: 1..=1,
                probe: 1,
                cold: true,
            },
            ember_us,
            ggml_us,
        }
    }

    #[test]
    fn the_fastest_of_two_kernels_for_the_same_columns_stays() {
        let v = |kernel, ember_us, ggml_us| Verdict {
            tunable: Tunable {
                kernel,
                cols: 16..=i64::MAX,
                probe: 64,
                cold: false,
            },
            ember_us,
            ggml_us,
        };
        let tile = Kernel::Tile { wide: true };
        let kernels =
            |vs: &[Verdict]| -> Vec<Kernel> { losers(vs).into_iter().map(|t| t.kernel).collect() };
        // the decode op faster than the tile op: the tile op refused
        assert_eq!(
            kernels(&[v(Kernel::Decode, 80.0, 100.0), v(tile, 90.0, 100.0)]),
            [tile]
        );
        // the tile op faster: the decode op refused
        assert_eq!(
            kernels(&[v(Kernel::Decode, 95.0, 100.0), v(tile, 90.0, 100.0)]),
            [Kernel::Decode]
        );
        // ggml's faster than both: both refused
        assert_eq!(
            kernels(&[v(Kernel::Decode, 150.0, 100.0), v(tile, 140.0, 100.0)]),
            [Kernel::Decode, tile]
        );
        // other columns are another choice
        let mut one = v(Kernel::Decode, 50.0, 60.0);
        one.tunable.cols = 1..=1;
        assert!(losers(&[one, v(tile, 40.0, 60.0)]).is_empty());
    }

    #[test]
    fn ember_keeps_its_kernel_unless_clearly_slower() {
        assert!(!verdict(100.0, 99.0).ggml_wins());
        assert!(!verdict(100.0, 120.0).ggml_wins());
        assert!(verdict(100.0, 90.0).ggml_wins());
    }

    #[test]
    fn the_cache_file_round_trips_and_tolerates_garbage() {
        let dir = std::env::temp_dir().join(format!("ember-tune-{}", std::process::id()));
        let f = dir.join("tune.json");
        let mut c = CacheFile::default();
        c.passes
            .entry("m".into())
            .or_default()
            .entry("x.gguf".into())
            .or_default()
            .insert("1".into(), 0.02);
        c.entries.entry("m".into()).or_default().insert(
            "Q4_K 1536x8960 repacked q4k-decode@1 cold".into(),
            Entry {
                ember_us: 10.0,
                ggml_us: 12.0,
            },
        );
        c.write(&f).unwrap();
        let back = CacheFile::read(&f);
        assert_eq!(back.entries["m"].len(), 1);
        assert_eq!(back.passes["m"]["x.gguf"]["1"], 0.02);
        std::fs::write(&f, b"{ not json").unwrap();
        assert!(CacheFile::read(&f).entries.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
