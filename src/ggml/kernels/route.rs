//! Which kernel multiplies each weight: decided once per weight, when the model is loaded, and
//! recorded beside it (a [`Route`]), from the kernels' switches ([`KernelSwitches`], read from
//! the environment in `crate::switches`), the CPU's features and ggml's build facts ([`Machine`]).
//!
//! A route maps a number of activation columns to a [`Kernel`]. Every kernel of Ember gives
//! ggml's `ggml_mul_mat` result bit for bit, but only where ggml computes in the order it
//! reproduces; the column ranges below are those. Outside them, and wherever a switch turns
//! Ember's ops off, a weight is multiplied by ggml's own matmul:
//!
//! | kernel         | weights                                     | columns   |
//! |----------------|---------------------------------------------|-----------|
//! | decode op      | Q4_1, Q5_0, Q8_0, Q6_K in plain host memory | 1         |
//! | Q4_K decode op | Q4_K in ggml's CPU repack buffer            | 1–3       |
//! | Q4_K prompt op | Q4_K in ggml's CPU repack buffer            | 4 or more |
//! | decode op      | Q4_1, Q5_0, Q8_0 (optimized builds)         | 2 or more |
//! | tile op        | Q4_1, Q5_0, Q8_0 in plain host memory       | 2 or more |
//! | Q6_K prompt op | Q6_K in plain host memory                   | 8 or more |
//!
//! Where two of Ember's kernels take the same columns, the first listed runs unless tuning
//! found the other faster (`crate::model::tune`).
//!
//! Each kernel also needs the CPU features it uses (`runs_on` in `mod.rs`), and the Q6_K op a
//! ggml built as it reproduces (AVX-512 VNNI, GCC) with its tiled path on. With layers on a GPU, ggml's scheduler runs products of 32 columns or more
//! on the GPU even where the weights are in host memory: those stay ggml's matmul (the tile
//! and Q6_K ops), so that it still can; repacked weights are never moved, so the Q4_K ops stay.
//!
//! A route also says how many columns of one product give, column for column, what one-column
//! products give ([`Route::exact_columns`]): what speculation (a verification batch of several
//! tokens) needs to pick what plain decoding picks.

use std::fmt;
use std::ops::RangeInclusive;
use std::sync::OnceLock;

use super::super::{Tensor, Type};
pub use crate::switches::KernelSwitches;

/// What this CPU and this build of ggml give the kernels (found once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Machine {
    /// AVX2, FMA and F16C: the decode op's kernels.
    pub avx2: bool,
    /// AVX-512 VNNI, VL, F and BW as well: the tile op, the decode op's VNNI kernels.
    pub vnni: bool,
    /// AVX-512 F: the tile op's 512-bit kernels.
    pub avx512f: bool,
    /// AVX-512 F and VL: 32 vector registers for 256-bit vectors (the attention op's
    /// accumulators four rows at a time).
    pub avx512vl: bool,
    /// AVX-512 F, BW and VNNI (and the above): the K-quant ops.
    pub k_quant: bool,
    /// ggml's CPU kernels were compiled with AVX-512 VNNI (not a `portable` build): its tiled
    /// K-quant path is the one the Q6_K op reproduces.
    pub ggml_vnni: bool,
    /// The compiler that built ggml fuses its last multiply-add (GCC does, clang does not), as
    /// the Q6_K op does.
    pub ggml_fuses_mul_add: bool,
}

impl Machine {
    pub fn get() -> &'static Machine {
        static MACHINE: OnceLock<Machine> = OnceLock::new();
        MACHINE.get_or_init(Machine::detect)
    }

    #[cfg(target_arch = "x86_64")]
    fn detect() -> Machine {
        let avx2 = is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c");
        // (every CPU with AVX-512 VNNI has F and BW too; the VNNI kernels use both)
        let vnni = avx2
            && is_x86_feature_detected!("avx512vnni")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw");
        let avx512f = is_x86_feature_detected!("avx512f");
        // SAFETY: a constant of ggml's build, no arguments, no side effects.
        let ggml_vnni = unsafe { ggml_sys::ggml_cpu_has_avx512_vnni() != 0 };
        Machine {
            avx2,
            vnni,
            avx512f,
            avx512vl: avx512f && is_x86_feature_detected!("avx512vl"),
            k_quant: vnni && avx512f && is_x86_feature_detected!("avx512bw"),
            ggml_vnni,
            ggml_fuses_mul_add: ggml_sys::CXX_FUSES_MUL_ADD,
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn detect() -> Machine {
        Machine {
            avx2: false,
            vnni: false,
            avx512f: false,
            avx512vl: false,
            k_quant: false,
            ggml_vnni: false,
            ggml_fuses_mul_add: ggml_sys::CXX_FUSES_MUL_ADD,
        }
    }
}

/// A kernel that multiplies a weight matrix by activation columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// ggml's `ggml_mul_mat` (which ggml's scheduler may also run on a GPU).
    Ggml,
    /// Ember's decode op: one column, several rows per pass (Q4_1, Q5_0, Q8_0, Q6_K).
    Decode,
    /// Ember's tile op for Q4_1, Q5_0, Q8_0, by its 512-bit kernels or its 256-bit ones.
    Tile { wide: bool },
    /// Ember's Q4_K decode op: one to three columns of a repacked Q4_K weight.
    Q4kDecode,
    /// Ember's Q4_K prompt op: a repacked Q4_K weight, 16-row groups unpacked once.
    Q4kPrompt,
    /// Ember's Q6_K prompt op: 16-row groups unpacked once.
    Q6kPrompt,
}

impl Kernel {
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Ggml => "ggml",
            Kernel::Decode => "decode",
            Kernel::Tile { wide: true } => "tile-512",
            Kernel::Tile { wide: false } => "tile-256",
            Kernel::Q4kDecode => "q4k-decode",
            Kernel::Q4kPrompt => "q4k-prompt",
            Kernel::Q6kPrompt => "q6k-prompt",
        }
    }
}

/// Where a weight's data lives, as far as the kernels care.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Placement {
    /// Host memory in ggml's own layout (in place in the file mapping, or copied).
    Host,
    /// ggml's CPU repack buffer, in the interleaved layout ggml chose for the type.
    Repacked,
    /// Anywhere else (a GPU's memory).
    Device,
}

impl Placement {
    pub fn of(w: Tensor<'_>) -> Placement {
        if w.is_plain_host_data() {
            Placement::Host
        } else if w.is_cpu_repacked() {
            Placement::Repacked
        } else {
            Placement::Device
        }
    }
}

/// Which kernel multiplies one weight, by the number of activation columns.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    /// Kernels other than ggml's, each with the column counts it takes (disjoint).
    bands: Vec<(Kernel, RangeInclusive<i64>)>,
    placement: Placement,
    /// See [`Route::exact_columns`].
    exact: Option<usize>,
    /// Up to how many columns the decode op, run over every column, beats the tile op in a
    /// batch-invariant product (see [`Route::invariant`]).
    decode_cols: i64,
    /// Ember's one-column kernel for this weight where one runs here (the decode op or the
    /// Q4_K decode op), whether or not tuning left it the 1-column band: a batch-invariant
    /// product of many columns runs it over all of them, reading the weights once.
    column_kernel: Option<Kernel>,
}

/// A choice between one of Ember's kernels and ggml's matmul that only a measurement on this
/// machine can make (both give the same bits): the kernel, the columns the choice decides,
/// and how to time it (`probe` columns; `cold`: with the weights out of the caches, as
/// decoding reads them).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Tunable {
    pub kernel: Kernel,
    pub cols: RangeInclusive<i64>,
    pub probe: i64,
    pub cold: bool,
}

/// Columns from which a tile op's product is timed as a prompt's (compute-bound, warm) rather
/// than as a few tokens' (memory-bound, cold).
const TILE_PROMPT_COLS: i64 = 16;

/// The column count a prompt kernel is timed at.
pub const PROMPT_PROBE: i64 = 64;

/// Up to how many columns of a batch-invariant product (one token of each of several sequences)
/// the decode op, run over every column with the weights in the cache, is faster than the tile
/// op (both give each column's one-column bits). Since the decode op's VNNI kernels take a pair
/// at three arithmetic operations (`cols.rs`), at every count measured: on an Ice Lake Xeon
/// (2 cores), `ember bench -npl` S_TG, two alternating runs each, decode op against tile op:
/// SmolLM2 (Q4_1) 239/207 against 191/171 t/s at 4 sequences, 329/214 against 159/166 at 8,
/// 254/224 against 147/178 at 16, 307/231 against 259/180 at 32; Qwen2.5 0.5B (Q5_0, Q8_0)
/// 98/106 against 68/73 at 16. (Before, on the same project's older VNNI machine: Q4_1 even
/// at 4-5 and behind from 6, Q5_0/Q8_0 even at 12-16.) Other weights: none.
fn decode_columns(ty: Type) -> i64 {
    match ty {
        Type::Q4_1 | Type::Q5_0 | Type::Q8_0 => 64,
        _ => 0,
    }
}

/// Products of this many columns or more may run on a GPU when the model has layers there.
const GPU_BATCH: i64 = 32;

/// Columns of a repacked weight that ggml (and the Q4_K decode op, which keeps its order)
/// multiplies one by one with its matrix × vector kernel; from four on, groups of four go
/// through its matrix × matrix kernel, which sums in another order.
const REPACKED_EXACT: usize = 3;

/// Columns of a K-quant (or i-quant) weight in host memory that ggml multiplies by `vec_dot`,
/// column by column; from eight on its tiled path takes over, in another order.
const GGML_TILED_EXACT: usize = 7;

/// Columns of a float weight (f32, f16, bf16) in host memory that ggml multiplies in one
/// order: one (from two on, llamafile's tiles sum in another order than `vec_dot`).
const FLOAT_EXACT: usize = 1;

impl Route {
    /// The route of weight `w` (allocated, as loaded) on this machine with this process's
    /// switches; `gpu_layers`: the model has layers on a GPU.
    pub fn decide(w: Tensor<'_>, gpu_layers: bool) -> Route {
        Route::decide_with(w, gpu_layers, Machine::get(), KernelSwitches::get())
    }

    /// The route of `w` on machine `m` with switches `s`.
    pub fn decide_with(w: Tensor<'_>, gpu_layers: bool, m: &Machine, s: &KernelSwitches) -> Route {
        let host_max = if gpu_layers { GPU_BATCH - 1 } else { i64::MAX };
        // ggml multiplies Q6_K weights by 8+ columns in the order the Q6_K op keeps only with
        // its tiled path on, built with AVX-512 VNNI by a compiler that fuses the last step.
        let ggml_tiles = s.ggml_tiled_mm && m.ggml_vnni && m.ggml_fuses_mul_add;
        let wide = s.wide_tiles && m.avx512f;
        // The decode op takes several columns of the formats it shares the one-column order
        // with (Q4_1, Q5_0, Q8_0: ggml's `vec_dot`, the tile op and llamafile's tiles all sum
        // each column as one-column products do), each weight block unpacked once for eight
        // columns. Where the tile op runs too, the decode op comes first and tuning keeps
        // whichever of the three is fastest for the weight's shape (on an Ice Lake Xeon the
        // decode op's VNNI kernels take a pair at three arithmetic operations, the tile op's
        // at more). Only in optimized builds: a debug build (untuned, its kernels
        // unoptimized) keeps the tile op or ggml's there.
        let columns =
            !cfg!(debug_assertions) && matches!(w.ty(), Type::Q4_1 | Type::Q5_0 | Type::Q8_0);
        let candidates = [
            (Kernel::Decode, s.ember_ops, 1..=1),
            (
                Kernel::Decode,
                s.ember_ops && s.prompt_ops && columns,
                2..=host_max,
            ),
            // The Q4_K ops' AVX2 kernels (no AVX-512) likewise only in optimized builds. The
            // decode op's unpacked row groups cost more there than ggml's matrix × vector
            // kernel for one column; from two on they pay, and a batch step's columns read the
            // weights once.
            (
                Kernel::Q4kDecode,
                s.ember_ops && (m.k_quant || !cfg!(debug_assertions)),
                if m.k_quant { 1..=3 } else { 2..=3 },
            ),
            (
                Kernel::Q4kPrompt,
                s.ember_ops && s.prompt_ops && (m.k_quant || !cfg!(debug_assertions)),
                4..=i64::MAX,
            ),
            (
                Kernel::Tile { wide },
                s.ember_ops && s.prompt_ops,
                2..=host_max,
            ),
            (
                Kernel::Q6kPrompt,
                s.ember_ops && s.prompt_ops && ggml_tiles,
                8..=host_max,
            ),
        ];
        let bands: Vec<(Kernel, RangeInclusive<i64>)> = candidates
            .into_iter()
            .filter(|(k, on, _)| *on && super::runs_on(*k, w, m))
            .map(|(k, _, cols)| (k, cols))
            .collect();
        let placement = Placement::of(w);
        let ty = w.ty();
        let decodes = bands.iter().any(|(k, _)| *k == Kernel::Decode);
        let exact = match placement {
            Placement::Repacked => Some(REPACKED_EXACT),
            Placement::Host if ty.block_size() == 256 && s.ggml_tiled_mm => Some(GGML_TILED_EXACT),
            Placement::Host if !ty.is_quantized() => Some(FLOAT_EXACT),
            Placement::Host | Placement::Device => None,
        };
        // (the Q4_K decode op gives ggml's one-column bits for every column, whether or not it
        // takes one-column products itself)
        let column_kernel = bands
            .iter()
            .find(|(k, cols)| match k {
                Kernel::Decode => cols.contains(&1),
                Kernel::Q4kDecode => true,
                _ => false,
            })
            .map(|(k, _)| *k);
        Route {
            bands,
            placement,
            exact,
            decode_cols: if decodes { decode_columns(ty) } else { 0 },
            column_kernel,
        }
    }

    /// The choices between Ember's kernels and ggml's this route holds, to time on this
    /// machine: the 1-column decode ops (cold); the tile op for a few columns (cold) and for a
    /// prompt (warm); the K-quant prompt ops (warm).
    pub fn tunables(&self) -> Vec<Tunable> {
        let mut out = Vec::new();
        for (k, cols) in &self.bands {
            let (a, b) = (*cols.start(), *cols.end());
            match k {
                Kernel::Decode | Kernel::Q4kDecode if a == 1 => out.push(Tunable {
                    kernel: *k,
                    cols: 1..=1,
                    probe: 1,
                    cold: true,
                }),
                Kernel::Tile { .. } | Kernel::Decode => {
                    if a < TILE_PROMPT_COLS {
                        out.push(Tunable {
                            kernel: *k,
                            cols: a..=b.min(TILE_PROMPT_COLS - 1),
                            probe: 4.clamp(a, b),
                            cold: true,
                        });
                    }
                    if b >= TILE_PROMPT_COLS {
                        out.push(Tunable {
                            kernel: *k,
                            cols: a.max(TILE_PROMPT_COLS)..=b,
                            probe: PROMPT_PROBE.clamp(a.max(TILE_PROMPT_COLS), b),
                            cold: false,
                        });
                    }
                }
                Kernel::Q4kPrompt | Kernel::Q6kPrompt => out.push(Tunable {
                    kernel: *k,
                    cols: a..=b,
                    probe: PROMPT_PROBE.clamp(a, b),
                    cold: false,
                }),
                _ => {}
            }
        }
        out
    }

    /// Leave the columns `t.cols` of kernel `t.kernel` to ggml's matmul (a measurement found
    /// ggml's faster there). What one-column products give is unchanged: every kernel gives
    /// ggml's bits.
    pub fn refuse(&mut self, t: &Tunable) {
        let mut bands = Vec::with_capacity(self.bands.len() + 1);
        for (k, cols) in self.bands.drain(..) {
            if k != t.kernel {
                bands.push((k, cols));
                continue;
            }
            let (a, b) = (*cols.start(), *cols.end());
            let (ca, cb) = (*t.cols.start(), *t.cols.end());
            if a < ca {
                bands.push((k, a..=(ca - 1).min(b)));
            }
            if b > cb {
                bands.push((k, (cb + 1).max(a)..=b));
            }
        }
        self.bands = bands;
    }

    /// ggml's matmul for every column count (a weight no kernel of Ember takes).
    pub fn ggml(placement: Placement) -> Route {
        Route {
            bands: Vec::new(),
            placement,
            exact: None,
            decode_cols: 0,
            column_kernel: None,
        }
    }

    /// The kernel for `n_cols` activation columns.
    pub fn kernel(&self, n_cols: i64) -> Kernel {
        self.bands
            .iter()
            .find(|(_, cols)| cols.contains(&n_cols))
            .map_or(Kernel::Ggml, |(k, _)| *k)
    }

    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// How many activation columns of one product give, column for column, the bits that
    /// one-column products (decoding) give, through the kernels this route picks: a
    /// speculative verification batch of up to this many tokens picks, at temperature 0, what
    /// plain decoding picks. `None`: no limit known.
    ///
    /// - repacked weights: 3 (ggml's matrix × vector kernel, or the Q4_K decode op, which keeps
    ///   its order, takes up to three columns one by one; from four on, ggml's matrix × matrix
    ///   kernel sums in another order);
    /// - K-quants and i-quants in host memory: 7 (from eight columns on, ggml's tiled path),
    ///   unless `GGML_CPU_TILED_MM=0`;
    /// - floats (f32, f16, bf16) in host memory: 1 (llamafile's tiles from two columns on);
    /// - Q4_0, Q4_1, Q5_0, Q8_0 in host memory: no limit (the decode op is ggml's `vec_dot`,
    ///   the tile op and llamafile's tiles sum each column in the same order);
    /// - weights on a GPU: not known (`None`; ggml's GPU kernels are not checked here).
    ///
    /// `tests.rs` (`exact_columns_hold`) checks each host case against ggml.
    pub fn exact_columns(&self) -> Option<usize> {
        self.exact
    }

    /// The kernels by column count, e.g. `1 decode, 2-31 tile-512, 32+ ggml`.
    pub fn describe(&self) -> String {
        let mut starts: Vec<i64> = vec![1];
        for (_, cols) in &self.bands {
            starts.push(*cols.start());
            if *cols.end() < i64::MAX {
                starts.push(cols.end() + 1);
            }
        }
        starts.sort_unstable();
        starts.dedup();
        let runs = starts.iter().enumerate().map(|(i, &a)| {
            let b = starts.get(i + 1).map_or(i64::MAX, |n| n - 1);
            (a, b, self.kernel(a))
        });
        show_runs(runs, 1, i64::MAX, |k| k.name().to_string())
    }
}

/// How a product of several columns gives each column the bits a one-column product gives
/// (a batch of several sequences, each column one sequence's token: see
/// [`Route::invariant`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invariant {
    /// The route's own kernel for this many columns does.
    Direct(Kernel),
    /// The one-column kernel, run over every column (the decode ops take any number, each
    /// column as a lone one): the weights are read once for all of them.
    Columns(Kernel),
    /// Products of at most this many columns each (the weights read once per group).
    Groups(usize),
}

impl Route {
    /// How to multiply `n_cols` columns so that each gets what a one-column product gives it:
    /// the route's kernel where its [`exact_columns`](Self::exact_columns) allow (or no limit is
    /// known: weights on a GPU), else the decode op over all columns where one-column products
    /// run it, else groups of `exact_columns`.
    pub fn invariant(&self, n_cols: i64) -> Invariant {
        if n_cols == 1 {
            return Invariant::Direct(self.kernel(1));
        }
        if n_cols <= self.decode_cols && self.column_kernel == Some(Kernel::Decode) {
            return Invariant::Columns(Kernel::Decode);
        }
        match self.exact {
            Some(e) if n_cols > e as i64 => match self.column_kernel {
                Some(k) => Invariant::Columns(k),
                None => Invariant::Groups(e),
            },
            _ => Invariant::Direct(self.kernel(n_cols)),
        }
    }
}

impl Route {
    /// What a batch-invariant product runs by the number of sequences in it, from two on
    /// (e.g. `2-3 q4k-decode, 4+ q4k-decode per column`): what [`describe`](Self::describe)'s
    /// bands do not say for batches (`ember batch`, the server, `ember bench -npl`).
    pub fn describe_batches(&self) -> String {
        const LAST: i64 = 256;
        let name = |inv: Invariant| match inv {
            // (the decode op takes each column as a lone one whichever way it is called)
            Invariant::Direct(k) | Invariant::Columns(k @ Kernel::Decode) => k.name().to_string(),
            Invariant::Columns(k) => format!("{} per column", k.name()),
            Invariant::Groups(1) => format!("{} per column", self.kernel(1).name()),
            Invariant::Groups(g) => format!("{} in groups of {g}", self.kernel(g as i64).name()),
        };
        let shown = |n: i64| match self.invariant(n) {
            Invariant::Columns(Kernel::Decode) => Invariant::Direct(Kernel::Decode),
            inv => inv,
        };
        show_runs((2..=LAST).map(|n| (n, n, shown(n))), 2, LAST, name)
    }
}

/// Column ranges `(from, to, what)` in order, neighbours with the same `what` merged, as
/// `1-3 a, 4+ b` (`all a` for one run over `first..=last`; `to == last` reads `from+`).
fn show_runs<T: PartialEq + Copy>(
    runs: impl Iterator<Item = (i64, i64, T)>,
    first: i64,
    last: i64,
    name: impl Fn(T) -> String,
) -> String {
    let mut merged: Vec<(i64, i64, T)> = Vec::new();
    for (a, b, t) in runs {
        match merged.last_mut() {
            Some(m) if m.2 == t => m.1 = b,
            _ => merged.push((a, b, t)),
        }
    }
    merged
        .iter()
        .map(|&(a, b, t)| match (a, b) {
            (a, b) if a == first && b == last => format!("all {}", name(t)),
            (a, b) if b == last => format!("{a}+ {}", name(t)),
            (a, b) if a == b => format!("{a} {}", name(t)),
            (a, b) => format!("{a}-{b} {}", name(t)),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}
