//! Ember's matrix kernels, as ggml custom ops, and the route that picks one per weight.
//!
//! **Decode op.** When one token is evaluated, every weight matrix is multiplied by one
//! activation vector. ggml's CPU kernels for Q4_1, Q5_0, Q8_0 and Q6_K weights then compute one
//! row at a time along a single chain of fused multiply-adds, so the core waits on that chain's
//! latency rather than on memory (profiled on SmolLM2: half the decode time in
//! `ggml_vec_dot_q4_1_q8_1`). The op here computes several rows at once with independent
//! chains and exactly ggml's arithmetic per row (see `x86.rs`): the same logits, sooner. Q4_K
//! weights as ggml repacks them have a decode op of their own (one to three tokens,
//! `kquant.rs`, `q4k.rs`).
//!
//! Given several columns (a step of several sequences), the decode op multiplies each Q4_1,
//! Q5_0 or Q8_0 weight row by up to eight of them at once (`cols.rs`: the columns laid out
//! block by block, each weight block unpacked once; `cols_wide.rs`: 16 at once, two per
//! 512-bit vector; `cols_lanes.rs`: four rows by eight columns, one (row, column) per pair of
//! lanes; `cols_choice.rs` times the three kinds when a model loads), and unpacks each Q6_K
//! super-block once for up to four; each column has its own accumulators in one-column order:
//! each column's result is what it gets alone.
//!
//! **Prompt ops** for several tokens, each again giving ggml's results bit for bit on CPUs
//! with AVX-512 VNNI: tiles for Q4_1, Q5_0 and Q8_0 (`tile.rs`), and for the K-quants, Q4_K as
//! ggml repacks it and Q6_K, 16-row groups unpacked once for all tokens (`kquant.rs`,
//! `groups.rs`, `q4k.rs`, `q6k.rs`). The decode op over all columns takes Q4_1, Q5_0 and Q8_0
//! prompts too (ggml multiplies these product by product in one-column order, unpacking a
//! weight block for every product): on CPUs with AVX2 only, and on VNNI CPUs where tuning finds
//! it faster than the tiles (from 16 columns a thread it splits by columns, not rows). Q4_K
//! prompts on AVX2-only CPUs have 256-bit kernels of their own over the same row groups
//! (`q4k_avx2.rs`: twice ggml's speed on a Zen 3 core).
//!
//! **Routes.** Which of them multiplies a weight, for how many columns, is decided once per
//! weight at load time in `route.rs` (CPU features, ggml's build, where the weight lives, the
//! environment switches `EMBER_NO_GEMV`, `EMBER_NO_TILED`, `EMBER_NO_WIDE`, `EMBER_NO_LANES`,
//! `GGML_CPU_TILED_MM`); [`Context::mul_mat_by`] runs the kernel a route picked. This file
//! says what each kernel can run on ([`runs_on`], [`takes`]): a matter of safety, not of
//! choice.

use std::cell::RefCell;
use std::ffi::{c_int, c_void};
#[cfg(target_arch = "x86_64")]
use std::sync::OnceLock;

use ggml_sys as sys;

use super::{Context, Tensor, Type};

pub mod attn;
pub mod attn_quant;
#[cfg(test)]
mod attn_quant_tests;
#[cfg(test)]
mod attn_tests;
mod claims;
#[cfg(target_arch = "x86_64")]
mod cols;
mod cols_choice;
#[cfg(target_arch = "x86_64")]
mod cols_lanes;
#[cfg(target_arch = "x86_64")]
mod cols_wide;
#[cfg(target_arch = "x86_64")]
mod groups;
mod invariant;
mod kquant;
mod peak;
#[cfg(target_arch = "x86_64")]
mod q4k;
#[cfg(target_arch = "x86_64")]
mod q4k_avx2;
#[cfg(target_arch = "x86_64")]
mod q6k;
mod route;
pub mod store;
#[cfg(target_arch = "x86_64")]
mod tile;
pub mod tune;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use peak::int8_peak_ops;
pub use route::{Invariant, Kernel, KernelSwitches, Machine, Placement, Route, Tunable};

/// The decode op's kernels over several columns timed on this CPU (ns per row, column and
/// block: 256-bit, 512-bit, one column per lane), and whether it takes the lane kernels;
/// `None` where only one kind runs (no AVX-512 VNNI, or `EMBER_NO_WIDE`). Timed once per
/// process, at the first call.
pub use cols_choice::{
    lanes_for as lane_columns_for, timings as column_kernels, Timings as ColumnTimings,
};

/// Rows per kernel call.
const ROWS: usize = 4;

/// Columns per kernel call of the Q6_K decode op given several (a step of several sequences).
const COLS: usize = 4;

/// A weight format this op handles, with its activation format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// Q4_1 weights · Q8_1 activations
    Q4_1,
    /// Q5_0 weights · Q8_0 activations
    Q5_0,
    /// Q8_0 weights · Q8_0 activations
    Q8_0,
    /// Q6_K weights · Q8_K activations (256 per block)
    Q6K,
}

impl Format {
    fn of(ty: Type) -> Option<Format> {
        match ty {
            Type::Q4_1 => Some(Format::Q4_1),
            Type::Q5_0 => Some(Format::Q5_0),
            Type::Q8_0 => Some(Format::Q8_0),
            Type::Q6_K => Some(Format::Q6K),
            _ => None,
        }
    }

    /// Weights per block.
    fn block(self) -> usize {
        match self {
            Format::Q6K => 256,
            _ => 32,
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn act_bytes(self) -> usize {
        match self {
            Format::Q4_1 => x86::Q8_1_BYTES,
            Format::Q5_0 | Format::Q8_0 => x86::Q8_0_BYTES,
            Format::Q6K => x86::Q8_K_BYTES,
        }
    }
}

/// The instruction set the decode and tile kernels run with, or None where this CPU has not
/// their base set (AVX2, FMA, F16C).
#[cfg(target_arch = "x86_64")]
fn isa() -> Option<x86::Isa> {
    let m = Machine::get();
    match (m.avx2, m.vnni) {
        (false, _) => None,
        (true, false) => Some(x86::Isa::Avx2),
        (true, true) => Some(x86::Isa::Vnni),
    }
}

/// The f16 table, set up on first use, on a CPU with F16C.
#[cfg(target_arch = "x86_64")]
fn f16_table() -> Option<&'static x86::F16Table> {
    static TABLE: OnceLock<Option<x86::F16Table>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            isa()?;
            // SAFETY: `isa` found F16C.
            Some(unsafe { x86::F16Table::new() })
        })
        .as_ref()
}

/// Whether kernel `k` can multiply weight `w` on machine `m`: its format, shape and memory,
/// and the CPU features the kernel uses. (Which columns it takes: [`takes`].)
fn runs_on(k: Kernel, w: Tensor<'_>, m: &Machine) -> bool {
    match k {
        Kernel::Ggml => true,
        Kernel::Decode => m.avx2 && plain_weight(w),
        Kernel::Tile { wide } => {
            m.vnni
                && (m.avx512f || !wide)
                && matches!(
                    Format::of(w.ty()),
                    Some(Format::Q4_1 | Format::Q5_0 | Format::Q8_0)
                )
                && plain_weight(w)
        }
        Kernel::Q4kDecode | Kernel::Q4kPrompt => (m.k_quant || m.avx2) && kquant::repacked_q4k(w),
        Kernel::Q6kPrompt => m.k_quant && kquant::plain_q6k(w),
    }
}

/// Whether kernel `k` can multiply `w` by the columns `x`: [`runs_on`] this machine, and
/// the columns are ones it takes (f32, contiguous, as many of them as it handles).
pub fn takes(k: Kernel, w: Tensor<'_>, x: Tensor<'_>) -> bool {
    let n = x.ne()[1];
    let cols = match k {
        Kernel::Ggml => return true,
        // (Routes give the decode ops one column, or up to three; they take any number, each
        // column as a lone one: see `Route::invariant`.)
        Kernel::Decode => n >= 1 && f32_columns(w, x, n > 1),
        Kernel::Tile { .. } => n > 1 && f32_columns(w, x, false),
        Kernel::Q4kDecode => n >= 1 && f32_columns(w, x, true),
        Kernel::Q4kPrompt => n >= 4 && f32_columns(w, x, true),
        Kernel::Q6kPrompt => n >= 8 && f32_columns(w, x, true),
    };
    cols && runs_on(k, w, Machine::get())
}

/// A weight the decode and tile kernels read: a 2-D matrix of a handled format, whole blocks
/// per row, contiguous and in plain host memory.
fn plain_weight(w: Tensor<'_>) -> bool {
    let wn = w.ne();
    Format::of(w.ty()).is_some_and(|f| wn[0] % f.block() as i64 == 0)
        && wn[2] == 1
        && wn[3] == 1
        && w.is_contiguous()
        && w.is_plain_host_data()
}

/// f32 activation columns as long as `w`'s rows, each contiguous, and (`packed`, or more than
/// one) one after the other.
fn f32_columns(w: Tensor<'_>, x: Tensor<'_>, packed: bool) -> bool {
    let xn = x.ne();
    x.ty() == Type::F32
        && xn[0] == w.ne()[0]
        && xn[2] == 1
        && xn[3] == 1
        && x.nb()[0] == 4
        && ((xn[1] == 1 && !packed) || x.nb()[1] == 4 * xn[0] as usize)
}

impl Context {
    /// `w · x` by kernel `k`, as a weight's [`Route`] picks it for `x`'s column count; by
    /// ggml's matmul where `k` does not take these columns (not contiguous f32). The result is
    /// `ggml_mul_mat(w, x)`'s, bit for bit, within the route's column ranges.
    pub fn mul_mat_by<'a>(&'a self, k: Kernel, w: Tensor<'a>, x: Tensor<'a>) -> Tensor<'a> {
        if !takes(k, w, x) {
            return self.mul_mat(w, x);
        }
        match k {
            Kernel::Ggml => self.mul_mat(w, x),
            Kernel::Decode => self.mul_mat_vec(w, x),
            Kernel::Tile { wide } => self.mul_mat_tiled(w, x, wide),
            Kernel::Q4kDecode => self.mul_mat_q4k_vec(w, x),
            Kernel::Q4kPrompt => self.mul_mat_q4k(w, x),
            Kernel::Q6kPrompt => self.mul_mat_q6k(w, x),
        }
    }
}

/// Pairs of tensor headers (a sequence's K and V, or its two caches) that a custom op reads
/// through its user data instead of as sources, so that the nine sources of a custom op do
/// not bound the sequences it takes: views made in the op's own context over allocated host
/// memory (no allocator places them, as they are no sources), read when the op computes.
struct ViewPairs(Vec<(*const sys::ggml_tensor, *const sys::ggml_tensor)>);

// SAFETY: the pointers are tensor headers of the context that keeps this value
// (`Context::keep`), only read while a graph of that context computes.
unsafe impl Send for ViewPairs {}

impl ViewPairs {
    /// `pairs` as an op built in `ctx` reads them; `op` names the op in the panic if a view is
    /// of another context or not over allocated host memory.
    fn new<'a>(
        ctx: &Context,
        op: &str,
        pairs: impl Iterator<Item = (Tensor<'a>, Tensor<'a>)>,
    ) -> ViewPairs {
        ViewPairs(
            pairs
                .map(|(a, b)| {
                    assert!(
                        [a, b].iter().all(|t| ctx.made(*t) && t.reads_host_data()),
                        "{op}: views of the op's own context over allocated host memory"
                    );
                    (a.as_ptr() as *const _, b.as_ptr() as *const _)
                })
                .collect(),
        )
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// Pair `i`.
    ///
    /// # Safety
    /// Called while a graph of the context that made and keeps these pairs computes (their
    /// headers live, their data allocated: checked when made); `i` below [`len`](Self::len).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    unsafe fn get(&self, i: usize) -> (&sys::ggml_tensor, &sys::ggml_tensor) {
        let (a, b) = self.0[i];
        // SAFETY: the caller's promise.
        unsafe { (&*a, &*b) }
    }
}

/// Thread `ith` of `nth`'s share of `n` items (rows, row groups or columns), as ggml passes
/// a custom op its thread index and count.
#[cfg(target_arch = "x86_64")]
fn share(n: usize, ith: c_int, nth: c_int) -> std::ops::Range<usize> {
    let (ith, nth) = (ith.max(0) as usize, nth.max(1) as usize);
    n * ith / nth..n * (ith + 1) / nth
}

/// Quantizes the f32 columns of `dst`'s first source into `dst`, one row per column, by
/// `quantize(column, row)`: thread `ith` of `nth` takes its share.
///
/// # Safety
/// `dst` is a live custom-op result whose first source is the f32 columns; `quantize` may be
/// handed any column and the row of `dst` for it.
#[cfg(target_arch = "x86_64")]
unsafe fn quantize_columns(
    dst: *mut sys::ggml_tensor,
    ith: c_int,
    nth: c_int,
    quantize: impl Fn(*const f32, *mut u8),
) {
    // SAFETY: ggml passes the live result tensor, whose first source is the columns, live for
    // the graph's computation.
    let (dst, x) = unsafe { (&*dst, &*(*dst).src[0]) };
    for c in share(x.ne[1] as usize, ith, nth) {
        let xp = (x.data as *const u8).wrapping_add(c * x.nb[1]) as *const f32;
        quantize(xp, (dst.data as *mut u8).wrapping_add(c * dst.nb[1]));
    }
}

/// A custom op's body, as ggml calls it.
type OpBody = unsafe extern "C" fn(*mut sys::ggml_tensor, c_int, c_int, *mut c_void);

impl Context {
    /// `w · x` for several activation columns, by the tile kernels (`wide`: the 512-bit
    /// ones): the columns are quantized (one op, as ggml quantizes them), then multiplied in
    /// tiles (a second op). The result is `ggml_mul_mat(w, x)`'s, bit for bit.
    fn mul_mat_tiled<'a>(&'a self, w: Tensor<'a>, x: Tensor<'a>, wide: bool) -> Tensor<'a> {
        let k = Kernel::Tile { wide };
        assert!(takes(k, w, x), "mul_mat_tiled: operands not supported");
        #[cfg(target_arch = "x86_64")]
        {
            let fmt = Format::of(w.ty()).expect("checked by takes");
            let (k, rows, cols) = (w.ne()[0], w.ne()[1], x.ne()[1]);
            let col_bytes = (k as usize / 32 * fmt.act_bytes()) as i64;
            let xq = self.custom_op(Type::I8, [col_bytes, cols], &[x, w], None, quantize_op);
            let body: OpBody = if wide {
                tile_op::<true>
            } else {
                tile_op::<false>
            };
            self.custom_op(Type::F32, [rows, cols], &[w, xq], None, body)
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("no tile kernels off x86-64")
    }

    /// `w · x` for one activation vector, by the multi-row kernels. The result is
    /// `ggml_mul_mat(w, x)`'s, bit for bit. Several columns are each computed as a lone one.
    fn mul_mat_vec<'a>(&'a self, w: Tensor<'a>, x: Tensor<'a>) -> Tensor<'a> {
        assert!(
            takes(Kernel::Decode, w, x),
            "mul_mat_vec: operands not supported"
        );
        // (the op's threads share the rows of a decode step as they go)
        let claims = self.keep(claims::Claims::default());
        self.custom_op_user(
            Type::F32,
            [w.ne()[1], x.ne()[1]],
            &[w, x],
            claims as *mut c_void,
            gemv_op,
        )
    }

    /// A `[ne0, ne1]` tensor of `ty` computed by `body` from `srcs`, on every thread. `hidden`,
    /// if any, reaches `body` as its user data instead of as a source: a weight in a buffer
    /// whose ops ggml's scheduler would refuse to place (the CPU repack buffer). It is never
    /// written and lives in the model's weights, longer than any graph.
    fn custom_op<'a>(
        &'a self,
        ty: Type,
        ne: [i64; 2],
        srcs: &[Tensor<'a>],
        hidden: Option<Tensor<'a>>,
        body: OpBody,
    ) -> Tensor<'a> {
        let user = hidden.map_or(std::ptr::null_mut(), |t| t.as_ptr().cast::<c_void>());
        self.custom_op_user(ty, ne, srcs, user, body)
    }

    /// [`custom_op`](Self::custom_op) with `user` as the body's user data, whatever its
    /// builder makes of that word (a weight, packed parameters).
    fn custom_op_user<'a>(
        &'a self,
        ty: Type,
        ne: [i64; 2],
        srcs: &[Tensor<'a>],
        user: *mut c_void,
        body: OpBody,
    ) -> Tensor<'a> {
        let mut args: Vec<*mut sys::ggml_tensor> = srcs.iter().map(|t| t.as_ptr()).collect();
        // SAFETY: live context and tensor headers; `args` outlives the call (ggml copies the
        // pointers into the new tensor's sources); `body` is one of this module's custom op
        // bodies, each reading its user data as what its builder passes here.
        self.op(|c| unsafe {
            sys::ggml_custom_4d(
                c,
                ty.raw(),
                ne[0],
                ne[1],
                1,
                1,
                args.as_mut_ptr(),
                args.len() as c_int,
                Some(body),
                sys::GGML_N_TASKS_MAX,
                user,
            )
        })
    }
}

thread_local! {
    /// The quantized activation, per thread (each thread quantizes the columns itself: one
    /// column is a few hundred bytes, and the op has no barrier to share them).
    static ACT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// The quantized columns laid out for the several-column kernels (`cols.rs`), per thread.
    static PACKED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Rows per block of the several-column loop: the packed columns are swept once per block,
/// each row's blocks stay in the first-level cache while they are.
#[cfg(target_arch = "x86_64")]
const ROW_BLOCK: usize = 16;

/// Packed bytes of the column chunks a block of rows meets in turn (they stay in the
/// second-level cache while every block of rows passes).
#[cfg(target_arch = "x86_64")]
const PACKED_GROUP_BYTES: usize = 128 << 10;

/// Columns per thread from which the decode op splits a product by columns, not rows.
#[cfg(target_arch = "x86_64")]
const SPLIT_COLS: usize = 16;

/// The custom op's body: thread `ith` of `nth` computes its share of the rows, for every column
/// (one, when decoding).
///
/// # Safety
/// Called by ggml's CPU backend with `dst` a tensor made by [`Context::mul_mat_vec`]: its
/// sources are the weight matrix and the f32 columns, all data allocated and `dst` f32
/// `[rows, cols]` (checked by [`takes`] when the op was built).
unsafe extern "C" fn gemv_op(
    dst: *mut sys::ggml_tensor,
    ith: c_int,
    nth: c_int,
    user: *mut c_void,
) {
    #[cfg(target_arch = "x86_64")]
    {
        let (Some(isa), Some(f16)) = (isa(), f16_table()) else {
            return;
        };
        // SAFETY: ggml passes the live result tensor, whose sources are the op's operands.
        let dst = unsafe { &*dst };
        // SAFETY: the op was built with these two sources, live for the graph's computation.
        let (w, x) = unsafe { (&*dst.src[0], &*dst.src[1]) };
        let Some(fmt) = Type::from_raw(w.type_ as u32).and_then(Format::of) else {
            return;
        };
        let nb = w.ne[0] as usize / fmt.block();
        let n_rows = w.ne[1] as usize;
        let n_cols = x.ne[1] as usize;
        let col_bytes = nb * fmt.act_bytes();
        // Many columns (a prompt): each thread takes its share of the columns over every row,
        // quantizing only those; fewer (a decode step): its share of the rows over every
        // column, which reads each weight once.
        let by_cols = fmt != Format::Q6K && n_cols >= SPLIT_COLS * nth.max(1) as usize;
        let columns = if by_cols {
            share(n_cols, ith, nth)
        } else {
            0..n_cols
        };
        ACT.with_borrow_mut(|act| {
            act.resize(columns.len() * col_bytes, 0);
            for (i, c) in columns.clone().enumerate() {
                let xp = (x.data as *const u8).wrapping_add(c * x.nb[1]) as *const f32;
                let yp = act.as_mut_ptr().wrapping_add(i * col_bytes);
                // SAFETY: column c of `x` holds nb blocks of contiguous floats (checked by
                // `takes`); `act` was sized for the thread's columns of nb activation blocks;
                // the CPU features were detected by `isa`.
                unsafe {
                    match fmt {
                        Format::Q4_1 => x86::quantize_q8_1(xp, yp, nb),
                        Format::Q5_0 | Format::Q8_0 => x86::quantize_q8_0(xp, yp, nb),
                        Format::Q6K => x86::quantize_q8_k(xp, yp, nb),
                    }
                }
            }
            if n_cols > 1 && fmt != Format::Q6K {
                let rows = if by_cols {
                    Rows::Fixed(0..n_rows)
                } else {
                    // SAFETY: the op's user data is the `Claims` `mul_mat_vec` kept in the
                    // graph's context; every thread of the op comes here (the path depends
                    // on the operands only) and runs it once.
                    let claims = unsafe { &*(user as *const claims::Claims) };
                    Rows::Shared(claims, ith.max(0) as usize, nth.max(1) as usize)
                };
                if columns.is_empty() {
                    return;
                }
                // SAFETY: `act` holds the quantized `columns` of nb blocks, `w` n_rows
                // rows of nb blocks (contiguous); `dst` is f32 [n_rows, n_cols]; the CPU
                // features were detected by `isa`.
                unsafe {
                    gemv_packed(
                        isa,
                        f16,
                        fmt,
                        w,
                        act,
                        col_bytes,
                        columns,
                        rows,
                        dst.data as *mut f32,
                    )
                };
                return;
            }
            let groups = share(n_rows.div_ceil(ROWS), ith, nth);
            let rows = groups.start * ROWS..(groups.end * ROWS).min(n_rows);
            if columns.is_empty() || rows.is_empty() {
                return;
            }
            let job = GemvJob {
                isa,
                f16,
                fmt,
                nb,
                n_rows,
                w_data: w.data as *const u8,
                w_row: w.nb[1],
                act: act.as_ptr(),
                col_bytes,
                out: dst.data as *mut f32,
            };
            // Q6_K over several columns on a VNNI CPU (32 vector registers): row by row, up
            // to 8 columns at once, so each super-block is unpacked once for all of them.
            if fmt == Format::Q6K && isa == x86::Isa::Vnni && n_cols > 1 {
                for r in rows {
                    for c0 in (0..n_cols).step_by(8) {
                        // SAFETY: row r and columns c0..c0+8 (or the rest) exist.
                        unsafe { job.q6k_columns(r, c0, (n_cols - c0).min(8)) };
                    }
                }
                return;
            }
            for g in groups {
                let r0 = g * ROWS;
                // Up to COLS columns at once over the group's rows, each weight block unpacked
                // once for them; every column computed as a lone one is.
                let mut c0 = 0;
                while c0 < n_cols {
                    let m = COLS.min(n_cols - c0);
                    if r0 + ROWS <= n_rows {
                        // SAFETY: rows r0..r0+ROWS and columns c0..c0+m exist.
                        unsafe { job.cols::<ROWS>(r0, c0, m) };
                    } else {
                        for r in r0..n_rows {
                            // SAFETY: as above, one row.
                            unsafe { job.cols::<1>(r, c0, m) };
                        }
                    }
                    c0 += m;
                }
            }
        });
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (dst, ith, nth);
}

/// The decode op's share of a product over several columns of Q4_1, Q5_0 or Q8_0: `rows`
/// against `columns` (`act`: those quantized, `col_bytes` apart). The columns are
/// packed in chunks of [`cols::COLS`]; the chunks are taken in groups whose packed bytes stay
/// in the second-level cache, and for each group each block of rows (in the first-level
/// cache) against each of its chunks.
///
/// # Safety
/// As in [`gemv_op`]: `w` the op's weight (n_rows contiguous rows of whole blocks), `act` the
/// quantized columns, `out` the f32 result `[n_rows, n_cols]`, `rows` and `columns` inside it;
/// the CPU has the features of `isa`.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn gemv_packed(
    isa: x86::Isa,
    f16: &x86::F16Table,
    fmt: Format,
    w: &sys::ggml_tensor,
    act: &[u8],
    col_bytes: usize,
    columns: std::ops::Range<usize>,
    rows: Rows<'_>,
    out: *mut f32,
) {
    let wide = isa == x86::Isa::Vnni && cols_choice::wide();
    let lanes = isa == x86::Isa::Vnni && cols_choice::lanes_for(columns.len());
    let packing = if lanes {
        cols::Packing::lanes(fmt)
    } else {
        cols::Packing::of(isa, fmt, wide)
    };
    let per = packing.max_cols();
    let nb = w.ne[0] as usize / 32;
    let n_rows = w.ne[1] as usize;
    let chunk_bytes = nb * packing.block(per);
    let n_chunks = columns.len().div_ceil(per);
    let group = (PACKED_GROUP_BYTES / chunk_bytes).max(1);
    PACKED.with_borrow_mut(|buf| {
        buf.resize(n_chunks * chunk_bytes + 64, 0);
        // on a cache line's start: no 32-byte load of the kernels straddles two lines (and
        // the 512-bit kernels' 64-byte loads are aligned)
        let start = buf.as_ptr().align_offset(64);
        let packed = &mut buf[start..];
        for i in 0..n_chunks {
            let n = per.min(columns.len() - i * per);
            let ys: [*const u8; cols::WIDE_COLS] =
                std::array::from_fn(|j| act.as_ptr().wrapping_add((i * per + j) * col_bytes));
            // SAFETY: the chunk's n columns exist in `act`; chunk i has room for nb packed
            // blocks.
            unsafe {
                cols::pack(
                    f16,
                    packing,
                    &ys[..n],
                    nb,
                    packed.as_mut_ptr().add(i * chunk_bytes),
                )
            };
        }
        let run = |rows: std::ops::Range<usize>| {
            for g0 in (0..n_chunks).step_by(group) {
                for r0 in rows.clone().step_by(ROW_BLOCK) {
                    for i in g0..(g0 + group).min(n_chunks) {
                        let c0 = columns.start + i * per;
                        let p = packed.as_ptr().wrapping_add(i * chunk_bytes);
                        let n = per.min(columns.end - c0);
                        let end = (r0 + ROW_BLOCK).min(rows.end);
                        let mut r = r0;
                        while r < end {
                            let row = (w.data as *const u8).wrapping_add(r * w.nb[1]);
                            let at = out.wrapping_add(c0 * n_rows + r);
                            if lanes {
                                let m = (end - r).min(4);
                                // SAFETY: rows r..r+m have nb blocks each, w.nb[1] apart; the
                                // chunk holds its n packed columns, whose results go to column
                                // c0 on, n_rows floats apart; VNNI (`lanes`).
                                unsafe {
                                    lane_rows(n, m, f16, fmt, row, w.nb[1], p, nb, at, n_rows)
                                }
                                r += m;
                            } else {
                                // SAFETY: row r has nb blocks; the chunk holds its n packed
                                // columns, whose results go to column c0 on, n_rows floats
                                // apart; forwarded features.
                                unsafe {
                                    packed_row_n(n, isa, wide, f16, fmt, row, p, nb, at, n_rows)
                                }
                                r += 1;
                            }
                        }
                    }
                }
            }
        };
        match rows {
            Rows::Fixed(r) => run(r),
            Rows::Shared(claims, ith, nth) => {
                // units of whole row blocks, enough of them (64 a thread) to even out
                let unit = n_rows.div_ceil(64 * nth).next_multiple_of(ROW_BLOCK);
                claims.run(n_rows.div_ceil(unit), ith, nth, |u| {
                    run(u.start * unit..(u.end * unit).min(n_rows))
                })
            }
        }
    });
}

/// The rows a thread of the decode op multiplies: a range fixed in advance (a prompt split
/// by columns: every row), or its claims on the rows of a step the threads share as they go
/// (`claims.rs`: the op, its thread, the threads).
#[cfg(target_arch = "x86_64")]
enum Rows<'a> {
    Fixed(std::ops::Range<usize>),
    Shared(&'a claims::Claims, usize, usize),
}

/// [`packed_row`] for `n` columns (1 to 16; above 8 only the 512-bit kernels).
///
/// # Safety
/// As [`packed_row`], with C = n.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn packed_row_n(
    n: usize,
    isa: x86::Isa,
    wide: bool,
    f16: &x86::F16Table,
    fmt: Format,
    row: *const u8,
    p: *const u8,
    nb: usize,
    at: *mut f32,
    stride: usize,
) {
    macro_rules! counts {
        ($kernel:ident $args:tt: $($c:literal)*) => {
            match n {
                $($c => $kernel::<$c> $args,)*
                _ => unreachable!("{n} columns for one kernel call"),
            }
        };
    }
    // SAFETY: forwarded (`wide` only with VNNI).
    unsafe {
        if wide {
            counts!(packed_row_wide(f16, fmt, row, p, nb, at, stride):
                1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
        } else {
            counts!(packed_row(isa, f16, fmt, row, p, nb, at, stride): 1 2 3 4 5 6 7 8)
        }
    }
}

/// `m` ≤ 4 rows (the first at `row`, `row_bytes` apart) against `n` ≤ 8 columns packed as
/// [`cols::Packing::lanes`] gives, by the one-column-per-lane kernels: two pairs of rows at
/// once, or one pair, or one row.
///
/// # Safety
/// As [`cols_lanes::pairs`] for the m rows; the CPU has AVX-512 VNNI (with F, BW, VL).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn lane_rows(
    n: usize,
    m: usize,
    f16: &x86::F16Table,
    fmt: Format,
    row: *const u8,
    row_bytes: usize,
    p: *const u8,
    nb: usize,
    at: *mut f32,
    stride: usize,
) {
    macro_rules! counts {
        ($P:literal, $row:expr, $rb:expr, $at:expr, $m:expr) => {{
            macro_rules! formats {
                ($C:literal) => {
                    match fmt {
                        Format::Q4_1 => cols_lanes::pairs::<$P, $C, { cols_lanes::Q4_1 }>(
                            f16, $row, $rb, p, nb, $at, stride, $m,
                        ),
                        Format::Q5_0 => cols_lanes::pairs::<$P, $C, { cols_lanes::Q5_0 }>(
                            f16, $row, $rb, p, nb, $at, stride, $m,
                        ),
                        _ => cols_lanes::pairs::<$P, $C, { cols_lanes::Q8_0 }>(
                            f16, $row, $rb, p, nb, $at, stride, $m,
                        ),
                    }
                };
            }
            match n {
                1 => formats!(1),
                2 => formats!(2),
                3 => formats!(3),
                4 => formats!(4),
                5 => formats!(5),
                6 => formats!(6),
                7 => formats!(7),
                8 => formats!(8),
                _ => unreachable!("{n} columns for one kernel call"),
            }
        }};
    }
    // SAFETY: forwarded; a lone row is read as both rows of its pair (`row_bytes` 0) and only
    // its results are written.
    unsafe {
        match m {
            4 => counts!(2, row, row_bytes, at, 4),
            2 => counts!(1, row, row_bytes, at, 2),
            1 => counts!(1, row, 0, at, 1),
            _ => {
                counts!(1, row, row_bytes, at, 2);
                counts!(1, row.add(2 * row_bytes), 0, at.add(2), 1);
            }
        }
    }
}

/// As [`packed_row`], by the 512-bit kernels (C ≤ 16).
///
/// # Safety
/// As [`packed_row`]; the CPU has AVX-512 VNNI (with F, BW, VL).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn packed_row_wide<const C: usize>(
    f16: &x86::F16Table,
    fmt: Format,
    row: *const u8,
    packed: *const u8,
    nb: usize,
    out: *mut f32,
    stride: usize,
) {
    use cols::wide;
    let mut o = [0.0f32; C];
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        match fmt {
            Format::Q4_1 => wide::q4_1::<C>(f16, row, packed, nb, &mut o),
            Format::Q5_0 => wide::signed::<C, true>(f16, row, packed, nb, &mut o),
            _ => wide::signed::<C, false>(f16, row, packed, nb, &mut o),
        }
        scatter(&o, out, stride)
    }
}

/// A row's C results to `out`, `stride` floats apart.
///
/// # Safety
/// `out` has room for C results `stride` apart.
#[cfg(target_arch = "x86_64")]
#[inline]
unsafe fn scatter<const C: usize>(o: &[f32; C], out: *mut f32, stride: usize) {
    for (j, v) in o.iter().enumerate() {
        // SAFETY: the caller's room.
        unsafe { *out.add(j * stride) = *v };
    }
}

/// One row against C packed columns, the results to `out`, `stride` floats apart.
///
/// # Safety
/// `row` holds nb blocks of `fmt`, `packed` nb packed blocks of C columns; `out` has room
/// for C results `stride` apart; the CPU has the features of `isa`.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn packed_row<const C: usize>(
    isa: x86::Isa,
    f16: &x86::F16Table,
    fmt: Format,
    row: *const u8,
    packed: *const u8,
    nb: usize,
    out: *mut f32,
    stride: usize,
) {
    use cols::{avx2, vnni};
    use x86::Isa;
    let mut o = [0.0f32; C];
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        match (isa, fmt) {
            (Isa::Avx2, Format::Q4_1) => avx2::q4_1::<C>(f16, row, packed, nb, &mut o),
            (Isa::Avx2, Format::Q5_0) => avx2::signed::<C, true>(f16, row, packed, nb, &mut o),
            (Isa::Avx2, _) => avx2::signed::<C, false>(f16, row, packed, nb, &mut o),
            (Isa::Vnni, Format::Q4_1) => vnni::q4_1::<C>(f16, row, packed, nb, &mut o),
            (Isa::Vnni, Format::Q5_0) => vnni::signed::<C, true>(f16, row, packed, nb, &mut o),
            (Isa::Vnni, _) => vnni::signed::<C, false>(f16, row, packed, nb, &mut o),
        }
        scatter(&o, out, stride)
    }
}

/// One call of the decode op: the weights, the quantized columns and the result.
#[cfg(target_arch = "x86_64")]
struct GemvJob<'a> {
    isa: x86::Isa,
    f16: &'a x86::F16Table,
    fmt: Format,
    nb: usize,
    n_rows: usize,
    w_data: *const u8,
    w_row: usize,
    act: *const u8,
    col_bytes: usize,
    out: *mut f32,
}

#[cfg(target_arch = "x86_64")]
impl GemvJob<'_> {
    /// Rows r0..r0+R × columns c0..c0+m (m ≤ [`COLS`]).
    ///
    /// # Safety
    /// Those rows and columns exist; the CPU has the features of `isa`.
    unsafe fn cols<const R: usize>(&self, r0: usize, c0: usize, m: usize) {
        // SAFETY: forwarded.
        unsafe {
            match m {
                1 => self.run::<R, 1>(r0, c0),
                2 => self.run::<R, 2>(r0, c0),
                3 => self.run::<R, 3>(r0, c0),
                // m ≤ COLS, and the arms above cover every count below it
                _ => {
                    const _: () = assert!(COLS == 4);
                    self.run::<R, COLS>(r0, c0)
                }
            }
        }
    }

    /// Row r × columns c0..c0+m (m ≤ 8).
    ///
    /// # Safety
    /// As [`GemvJob::cols`].
    unsafe fn q6k_columns(&self, r: usize, c0: usize, m: usize) {
        // SAFETY: forwarded.
        unsafe {
            match m {
                1 => self.run::<1, 1>(r, c0),
                2 => self.run::<1, 2>(r, c0),
                3 => self.run::<1, 3>(r, c0),
                4 => self.run::<1, 4>(r, c0),
                5 => self.run::<1, 5>(r, c0),
                6 => self.run::<1, 6>(r, c0),
                7 => self.run::<1, 7>(r, c0),
                _ => self.run::<1, 8>(r, c0),
            }
        }
    }

    /// # Safety
    /// As [`GemvJob::cols`], with C columns.
    unsafe fn run<const R: usize, const C: usize>(&self, r0: usize, c0: usize) {
        let rows: [*const u8; R] =
            std::array::from_fn(|i| self.w_data.wrapping_add((r0 + i) * self.w_row));
        let ys: [*const u8; C] =
            std::array::from_fn(|j| self.act.wrapping_add((c0 + j) * self.col_bytes));
        let mut o = [[0.0f32; R]; C];
        // SAFETY: the rows hold nb whole blocks each (contiguous weight), the columns nb
        // activation blocks; `out` has n_rows floats per column; the caller's CPU features.
        unsafe {
            dot(self.isa, self.f16, self.fmt, &rows, &ys, self.nb, &mut o);
            for (j, oj) in o.iter().enumerate() {
                let out = self.out.add((c0 + j) * self.n_rows + r0);
                std::ptr::copy_nonoverlapping(oj.as_ptr(), out, R);
            }
        }
    }
}

/// Quantizes the activation columns for [`tile_op`]: thread `ith` of `nth` takes its share.
///
/// # Safety
/// Called by ggml's CPU backend with `dst` made by [`Context::mul_mat_tiled`]: sources the f32
/// columns and the weights, `dst` an i8 tensor of one quantized column per row.
unsafe extern "C" fn quantize_op(
    dst: *mut sys::ggml_tensor,
    ith: c_int,
    nth: c_int,
    _: *mut c_void,
) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: ggml passes the live result tensor; the op was built with the weights as its
        // second source, live for the graph's computation.
        let (x, w) = unsafe { (&*(*dst).src[0], &*(*dst).src[1]) };
        let Some(fmt) = Type::from_raw(w.type_ as u32).and_then(Format::of) else {
            return;
        };
        let nb = x.ne[0] as usize / 32;
        // SAFETY: the op was built by `mul_mat_tiled`, whose columns hold nb blocks of
        // contiguous floats each (checked by `takes`) and whose rows of `dst` have room
        // for nb activation blocks (its size); the CPU features were detected.
        unsafe {
            quantize_columns(dst, ith, nth, |xp, yp| match fmt {
                Format::Q4_1 => x86::quantize_q8_1(xp, yp, nb),
                _ => x86::quantize_q8_0(xp, yp, nb),
            })
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (dst, ith, nth);
}

/// Multiplies the weights by the quantized columns in tiles, by the 512-bit kernels (`WIDE`)
/// or the 256-bit ones: thread `ith` of `nth` takes its share of the row groups, for every
/// column.
///
/// # Safety
/// Called by ggml's CPU backend with `dst` made by [`Context::mul_mat_tiled`]: sources the
/// weights and the output of [`quantize_op`], `dst` f32 `[rows, cols]`.
unsafe extern "C" fn tile_op<const WIDE: bool>(
    dst: *mut sys::ggml_tensor,
    ith: c_int,
    nth: c_int,
    _: *mut c_void,
) {
    #[cfg(target_arch = "x86_64")]
    {
        use tile::{TILE_R, WIDE_C};
        let Some(f16) = f16_table() else { return };
        let tile_c = if WIDE { WIDE_C } else { tile::TILE_C };
        // SAFETY: ggml passes the live result tensor, whose sources are the op's operands.
        let dst = unsafe { &*dst };
        // SAFETY: the op was built with these two sources, live for the graph's computation.
        let (w, xq) = unsafe { (&*dst.src[0], &*dst.src[1]) };
        let Some(fmt) = Type::from_raw(w.type_ as u32).and_then(Format::of) else {
            return;
        };
        let job = TileJob {
            fmt,
            f16,
            w,
            xq,
            nb: w.ne[0] as usize / 32,
            out: dst.data as *mut f32,
            n_rows: w.ne[1] as usize,
        };
        let n_cols = xq.ne[1] as usize;
        let groups = share(job.n_rows.div_ceil(TILE_R), ith, nth);
        for c0 in (0..n_cols).step_by(tile_c) {
            let nc = tile_c.min(n_cols - c0);
            for g in groups.clone() {
                let r0 = g * TILE_R;
                let nr = TILE_R.min(job.n_rows - r0);
                // SAFETY: rows r0..r0+nr and columns c0..c0+nc exist with nb whole blocks
                // each; `out` holds n_rows × n_cols floats; the CPU has VNNI and, for the wide
                // kernels, AVX-512 F (checked by `takes` when the op was built).
                unsafe {
                    if WIDE {
                        job.wide(r0, nr, c0, nc)
                    } else {
                        job.narrow(r0, nr, c0, nc)
                    }
                };
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (dst, ith, nth);
}

/// What every tile of one [`tile_op`] shares: the weights, the quantized columns and where the
/// results go (column-major, `n_rows` per column).
#[cfg(target_arch = "x86_64")]
struct TileJob<'a> {
    fmt: Format,
    f16: &'a x86::F16Table,
    w: &'a sys::ggml_tensor,
    xq: &'a sys::ggml_tensor,
    /// Blocks of 32 per row.
    nb: usize,
    out: *mut f32,
    n_rows: usize,
}

#[cfg(target_arch = "x86_64")]
impl TileJob<'_> {
    fn row(&self, r: usize) -> *const u8 {
        (self.w.data as *const u8).wrapping_add(r * self.w.nb[1])
    }

    fn col(&self, c: usize) -> *const u8 {
        (self.xq.data as *const u8).wrapping_add(c * self.xq.nb[1])
    }

    /// Writes the first `nc` columns of a tile's results at (r0, c0).
    ///
    /// # Safety
    /// Rows r0..r0+R and columns c0..c0+nc lie inside `out`.
    unsafe fn store<const R: usize>(&self, o: &[[f32; R]], r0: usize, c0: usize, nc: usize) {
        for (j, oc) in o.iter().take(nc).enumerate() {
            // SAFETY: inside `out` (the caller's contract); `o` is a separate local array.
            unsafe {
                let dst = self.out.add((c0 + j) * self.n_rows + r0);
                std::ptr::copy_nonoverlapping(oc.as_ptr(), dst, R);
            }
        }
    }

    /// The weight format of a signed tile kernel (Q5_0 or Q8_0).
    fn signed(&self) -> tile::Signed {
        if self.fmt == Format::Q5_0 {
            tile::Signed::Q5_0
        } else {
            tile::Signed::Q8_0
        }
    }

    /// One tile of `nr` (1 to 4) × `nc` (1 to 8) at (r0, c0) by the 512-bit kernels.
    ///
    /// # Safety
    /// As in [`tile_op`], and the CPU has AVX-512 F.
    unsafe fn wide(&self, r0: usize, nr: usize, c0: usize, nc: usize) {
        unsafe fn run<const R: usize, const P: usize>(
            job: &TileJob<'_>,
            cols: &[*const u8; tile::WIDE_C],
            r0: usize,
            c0: usize,
            nc: usize,
        ) {
            let rows: [*const u8; R] = std::array::from_fn(|i| job.row(r0 + i));
            let mut o = [[0.0f32; R]; tile::WIDE_C];
            let (f16, nb) = (job.f16, job.nb);
            // SAFETY: forwarded from the caller's contract.
            unsafe {
                match job.fmt {
                    Format::Q4_1 => tile::wide_q4_1::<R, P>(f16, &rows, cols, nb, &mut o),
                    _ => tile::wide_signed::<R, P>(job.signed(), f16, &rows, cols, nb, &mut o),
                }
                job.store(&o, r0, c0, nc);
            }
        }
        // an odd last column is paired with itself, its second result dropped
        let cols: [*const u8; tile::WIDE_C] = std::array::from_fn(|j| self.col(c0 + j.min(nc - 1)));
        macro_rules! dispatch {
            ($($r:literal, $p:literal);*) => {
                match (nr, nc.div_ceil(2)) {
                    $(($r, $p) => run::<$r, $p>(self, &cols, r0, c0, nc),)*
                    _ => unreachable!("tiles are 1 to 4 rows by 1 to 4 column pairs"),
                }
            };
        }
        // SAFETY: forwarded from the caller's contract.
        unsafe {
            dispatch!(4,4; 4,3; 4,2; 4,1; 3,4; 3,3; 3,2; 3,1; 2,4; 2,3; 2,2; 2,1; 1,4; 1,3; 1,2; 1,1)
        }
    }

    /// One tile of `nr` × `nc` (each 1 to 4) at (r0, c0) by the 256-bit kernels.
    ///
    /// # Safety
    /// As in [`tile_op`].
    unsafe fn narrow(&self, r0: usize, nr: usize, c0: usize, nc: usize) {
        unsafe fn run<const R: usize, const C: usize>(job: &TileJob<'_>, r0: usize, c0: usize) {
            let rows: [*const u8; R] = std::array::from_fn(|i| job.row(r0 + i));
            let cols: [*const u8; C] = std::array::from_fn(|j| job.col(c0 + j));
            let mut o = [[0.0f32; R]; C];
            let (f16, nb) = (job.f16, job.nb);
            // SAFETY: forwarded from the caller's contract.
            unsafe {
                match job.fmt {
                    Format::Q4_1 => tile::tile_q4_1(f16, &rows, &cols, nb, &mut o),
                    _ => tile::tile_signed(job.signed(), f16, &rows, &cols, nb, &mut o),
                }
                job.store(&o, r0, c0, C);
            }
        }
        macro_rules! dispatch {
            ($($r:literal, $c:literal);*) => {
                match (nr, nc) {
                    $(($r, $c) => run::<$r, $c>(self, r0, c0),)*
                    _ => unreachable!("tiles are 1 to 4 by 1 to 4"),
                }
            };
        }
        // SAFETY: forwarded from the caller's contract.
        unsafe {
            dispatch!(4,4; 4,3; 4,2; 4,1; 3,4; 3,3; 3,2; 3,1; 2,4; 2,3; 2,2; 2,1; 1,4; 1,3; 1,2; 1,1)
        }
    }
}

/// R rows · C quantized activations (`out[c][r]`), by format and instruction set; each
/// column's results are what it gets alone.
///
/// # Safety
/// `rows` point at `nb` blocks of `fmt` each, every `ys[c]` at `nb` activation blocks; the CPU
/// has the features of `isa`.
#[cfg(target_arch = "x86_64")]
unsafe fn dot<const R: usize, const C: usize>(
    isa: x86::Isa,
    f16: &x86::F16Table,
    fmt: Format,
    rows: &[*const u8; R],
    ys: &[*const u8; C],
    nb: usize,
    out: &mut [[f32; R]; C],
) {
    use x86::{avx2, vnni, Isa};
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        match (isa, fmt) {
            (Isa::Vnni, Format::Q4_1) => vnni::dot_q4_1(f16, rows, ys, nb, out),
            (Isa::Vnni, Format::Q5_0) => vnni::dot_q5_0(f16, rows, ys, nb, out),
            (Isa::Vnni, Format::Q8_0) => vnni::dot_q8_0(f16, rows, ys, nb, out),
            (Isa::Avx2, Format::Q4_1) => avx2::dot_q4_1(f16, rows, ys, nb, out),
            (Isa::Avx2, Format::Q5_0) => avx2::dot_q5_0(f16, rows, ys, nb, out),
            (Isa::Avx2, Format::Q8_0) => avx2::dot_q8_0(f16, rows, ys, nb, out),
            (Isa::Vnni, Format::Q6K) => x86::dot_q6_k_vnni(f16, rows, ys, nb, out),
            (Isa::Avx2, Format::Q6K) => x86::dot_q6_k(f16, rows, ys, nb, out),
        }
    }
}

#[cfg(test)]
mod tests;
