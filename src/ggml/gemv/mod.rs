//! Matrix × vector products for decoding, as a ggml custom op.
//!
//! When one token is evaluated, every weight matrix is multiplied by one activation vector.
//! ggml's CPU kernels for Q4_1, Q5_0, Q8_0 and Q6_K weights then compute one row at a time along a
//! single chain of fused multiply-adds, so the core waits on that chain's latency rather than
//! on memory (profiled on SmolLM2: half the decode time in `ggml_vec_dot_q4_1_q8_1`). The op
//! here computes several rows at once with independent chains and exactly ggml's arithmetic
//! per row (see `x86.rs`): the same logits, sooner.
//!
//! Used only where it gives ggml's results: one token (for several, ggml's matmul goes through
//! llamafile's tiled kernels for Q5_0/Q8_0, with another summation order), weights in plain
//! host memory (not repacked, not on a GPU), an x86-64 CPU with AVX2, FMA and F16C.
//! `EMBER_NO_GEMV=1` turns it off, to compare. Q4_K weights as ggml repacks them have a decode
//! op of their own (one to three tokens, `kquant.rs`, `q4k.rs`), turned off the same way.
//!
//! The prompt ops for several tokens live here too, each again giving ggml's results bit for
//! bit on CPUs with AVX-512 VNNI: tiles for Q4_1, Q5_0 and Q8_0 (`tile.rs`), and for the
//! K-quants, Q4_K as ggml repacks it and Q6_K, 16-row groups unpacked once for all tokens
//! (`kquant.rs`, `groups.rs`, `q4k.rs`, `q6k.rs`). `EMBER_NO_TILED=1` turns them off.

use std::cell::RefCell;
use std::ffi::{c_int, c_void};
#[cfg(target_arch = "x86_64")]
use std::sync::OnceLock;

use ggml_sys as sys;

use super::{Context, Tensor, Type};

#[cfg(target_arch = "x86_64")]
mod groups;
mod kquant;
#[cfg(target_arch = "x86_64")]
mod q4k;
#[cfg(target_arch = "x86_64")]
mod q6k;
#[cfg(target_arch = "x86_64")]
mod tile;
#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(test)]
mod tests;

pub use kquant::{applies_q4k, applies_q4k_vec, applies_q6k};

/// Rows per kernel call.
const ROWS: usize = 4;

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

/// The instruction set the kernels run with, or None where they cannot run (or are turned off).
#[cfg(target_arch = "x86_64")]
fn isa() -> Option<x86::Isa> {
    kernels().map(|k| k.0)
}

/// The instruction set and the f16 table, set up on first use.
#[cfg(target_arch = "x86_64")]
fn kernels() -> Option<&'static (x86::Isa, x86::F16Table)> {
    static KERNELS: OnceLock<Option<(x86::Isa, x86::F16Table)>> = OnceLock::new();
    KERNELS
        .get_or_init(|| {
            if std::env::var_os("EMBER_NO_GEMV").is_some() {
                return None;
            }
            let isa = x86::Isa::detect()?;
            // SAFETY: `detect` found F16C.
            Some((isa, unsafe { x86::F16Table::new() }))
        })
        .as_ref()
}

#[cfg(not(target_arch = "x86_64"))]
fn isa() -> Option<()> {
    None
}

/// Whether `w · x` can be the decode op: see the module documentation.
pub fn applies(w: Tensor<'_>, x: Tensor<'_>) -> bool {
    isa().is_some() && plain_operands(w, x) && x.ne()[1] == 1
}

/// What both ops need of their operands: a 2-D weight matrix of a handled format, whole blocks
/// per row, contiguous and in plain host memory; f32 activation columns of the same length,
/// each contiguous.
fn plain_operands(w: Tensor<'_>, x: Tensor<'_>) -> bool {
    let (wn, xn) = (w.ne(), x.ne());
    Format::of(w.ty()).is_some_and(|f| wn[0] % f.block() as i64 == 0)
        && x.ty() == Type::F32
        && xn[0] == wn[0]
        && xn[2] == 1
        && xn[3] == 1
        && wn[2] == 1
        && wn[3] == 1
        && x.nb()[0] == 4
        && (xn[1] == 1 || x.nb()[1] == 4 * xn[0] as usize)
        && w.is_contiguous()
        && w.is_plain_host_data()
}

/// Whether `w · x` for several activation columns can go through the tile kernels
/// ([`Context::mul_mat_tiled`]): Q4_1, Q5_0 or Q8_0 weights in plain host memory, contiguous f32
/// columns, a CPU with AVX-512 VNNI. `EMBER_NO_TILED=1` turns it off, to compare.
pub fn applies_tiled(w: Tensor<'_>, x: Tensor<'_>) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        !tiled_off()
            && isa() == Some(x86::Isa::Vnni)
            && matches!(
                Format::of(w.ty()),
                Some(Format::Q4_1 | Format::Q5_0 | Format::Q8_0)
            )
            && plain_operands(w, x)
            && x.ne()[1] > 1
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (w, x);
        false
    }
}

/// Thread `ith` of `nth`'s share of `n` items (rows, row groups or columns), as ggml passes
/// a custom op its thread index and count.
#[cfg(target_arch = "x86_64")]
fn share(n: usize, ith: c_int, nth: c_int) -> std::ops::Range<usize> {
    let (ith, nth) = (ith.max(0) as usize, nth.max(1) as usize);
    n * ith / nth..n * (ith + 1) / nth
}

/// Whether `EMBER_NO_TILED` turns the prompt ops off (read once).
#[cfg(target_arch = "x86_64")]
fn tiled_off() -> bool {
    static OFF: OnceLock<bool> = OnceLock::new();
    *OFF.get_or_init(|| std::env::var_os("EMBER_NO_TILED").is_some())
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
    /// `w · x` for several activation columns, by the tile kernels: the columns are quantized
    /// (one op, as ggml quantizes them), then multiplied in tiles (a second op). The caller
    /// checks [`applies_tiled`] first; the result is `ggml_mul_mat(w, x)`'s, bit for bit.
    pub fn mul_mat_tiled<'a>(&'a self, w: Tensor<'a>, x: Tensor<'a>) -> Tensor<'a> {
        assert!(applies_tiled(w, x), "mul_mat_tiled: operands not supported");
        #[cfg(target_arch = "x86_64")]
        {
            let fmt = Format::of(w.ty()).expect("checked by applies_tiled");
            let (k, rows, cols) = (w.ne()[0], w.ne()[1], x.ne()[1]);
            let col_bytes = (k as usize / 32 * fmt.act_bytes()) as i64;
            let xq = self.custom_op(Type::I8, [col_bytes, cols], &[x, w], None, quantize_op);
            self.custom_op(Type::F32, [rows, cols], &[w, xq], None, tile_op)
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("applies_tiled is false off x86-64")
    }

    /// `w · x` for one activation vector, by the multi-row kernels. The caller checks
    /// [`applies`] first; the result is `ggml_mul_mat(w, x)`'s, bit for bit.
    pub fn mul_mat_vec<'a>(&'a self, w: Tensor<'a>, x: Tensor<'a>) -> Tensor<'a> {
        assert!(applies(w, x), "mul_mat_vec: operands not supported");
        self.custom_op(Type::F32, [w.ne()[1], x.ne()[1]], &[w, x], None, gemv_op)
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
        let mut args: Vec<*mut sys::ggml_tensor> = srcs.iter().map(|t| t.as_ptr()).collect();
        let user = hidden.map_or(std::ptr::null_mut(), |t| t.as_ptr().cast::<c_void>());
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
    /// The quantized activation, per thread (each thread quantizes the vector itself: it is
    /// a few hundred bytes, and the op has no barrier to share it).
    static ACT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The custom op's body: thread `ith` of `nth` computes its share of the rows.
///
/// # Safety
/// Called by ggml's CPU backend with `dst` a tensor made by [`Context::mul_mat_vec`]: its
/// sources are the weight matrix and the f32 vector, all data allocated and `dst` f32
/// `[rows, 1]` (checked by [`applies`] when the op was built).
unsafe extern "C" fn gemv_op(dst: *mut sys::ggml_tensor, ith: c_int, nth: c_int, _: *mut c_void) {
    #[cfg(target_arch = "x86_64")]
    {
        let Some((isa, f16)) = kernels() else { return };
        // SAFETY: ggml passes the live result tensor, whose sources are the op's operands.
        let dst = unsafe { &*dst };
        // SAFETY: the op was built with these two sources, live for the graph's computation.
        let (w, x) = unsafe { (&*dst.src[0], &*dst.src[1]) };
        let Some(fmt) = Type::from_raw(w.type_ as u32).and_then(Format::of) else {
            return;
        };
        let nb = w.ne[0] as usize / fmt.block();
        let n_rows = w.ne[1] as usize;
        ACT.with_borrow_mut(|act| {
            act.resize(nb * fmt.act_bytes(), 0);
            let (xp, yp) = (x.data as *const f32, act.as_mut_ptr());
            // SAFETY: `x` holds ne[0] = nb blocks of contiguous floats (checked by `applies`);
            // `act` was sized for nb activation blocks; the CPU features were detected by `isa`.
            unsafe {
                match fmt {
                    Format::Q4_1 => x86::quantize_q8_1(xp, yp, nb),
                    Format::Q5_0 | Format::Q8_0 => x86::quantize_q8_0(xp, yp, nb),
                    Format::Q6K => x86::quantize_q8_k(xp, yp, nb),
                }
            }
            let groups = share(n_rows.div_ceil(ROWS), ith, nth);
            let row = |r: usize| (w.data as *const u8).wrapping_add(r * w.nb[1]);
            let out = dst.data as *mut f32;
            for g in groups {
                let r0 = g * ROWS;
                if r0 + ROWS <= n_rows {
                    let rows: [*const u8; ROWS] = std::array::from_fn(|i| row(r0 + i));
                    let mut o = [0.0f32; ROWS];
                    // SAFETY: rows r0..r0+ROWS exist, each nb whole blocks (contiguous weight);
                    // `out` has n_rows floats.
                    unsafe {
                        dot(*isa, f16, fmt, &rows, act.as_ptr(), nb, &mut o);
                        std::ptr::copy_nonoverlapping(o.as_ptr(), out.add(r0), ROWS);
                    }
                } else {
                    for r in r0..n_rows {
                        let mut o = [0.0f32; 1];
                        // SAFETY: as above, one row.
                        unsafe {
                            dot(*isa, f16, fmt, &[row(r)], act.as_ptr(), nb, &mut o);
                            *out.add(r) = o[0];
                        }
                    }
                }
            }
        });
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (dst, ith, nth);
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
        // contiguous floats each (checked by `applies_tiled`) and whose rows of `dst` have room
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

/// Multiplies the weights by the quantized columns in tiles: thread `ith` of `nth` takes its
/// share of the row groups, for every column.
///
/// # Safety
/// Called by ggml's CPU backend with `dst` made by [`Context::mul_mat_tiled`]: sources the
/// weights and the output of [`quantize_op`], `dst` f32 `[rows, cols]`.
unsafe extern "C" fn tile_op(dst: *mut sys::ggml_tensor, ith: c_int, nth: c_int, _: *mut c_void) {
    #[cfg(target_arch = "x86_64")]
    {
        use tile::{TILE_R, WIDE_C};
        let Some((_, f16)) = kernels() else { return };
        let wide = *WIDE.get_or_init(|| {
            std::env::var_os("EMBER_NO_WIDE").is_none() && is_x86_feature_detected!("avx512f")
        }) && !NARROW.load(std::sync::atomic::Ordering::Relaxed);
        let tile_c = if wide { WIDE_C } else { tile::TILE_C };
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
                // each; `out` holds n_rows × n_cols floats; the CPU has VNNI (`applies_tiled`)
                // and, for the wide kernels, AVX-512 F (checked above).
                unsafe {
                    if wide {
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

/// Whether the 512-bit tile kernels run (AVX-512 F present; `EMBER_NO_WIDE=1` turns them off).
#[cfg(target_arch = "x86_64")]
static WIDE: OnceLock<bool> = OnceLock::new();

/// Set by tests to run the 256-bit kernels where the 512-bit ones would (both give the same
/// results, so other tests running meanwhile are unaffected).
#[cfg(target_arch = "x86_64")]
static NARROW: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

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

/// R rows · the quantized activation, by format and instruction set.
///
/// # Safety
/// `rows` point at `nb` blocks of `fmt` each, `y` at `nb` activation blocks; the CPU has the
/// features of `isa`.
#[cfg(target_arch = "x86_64")]
unsafe fn dot<const R: usize>(
    isa: x86::Isa,
    f16: &x86::F16Table,
    fmt: Format,
    rows: &[*const u8; R],
    y: *const u8,
    nb: usize,
    out: &mut [f32; R],
) {
    use x86::{avx2, vnni, Isa};
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        match (isa, fmt) {
            (Isa::Vnni, Format::Q4_1) => vnni::dot_q4_1(f16, rows, y, nb, out),
            (Isa::Vnni, Format::Q5_0) => vnni::dot_q5_0(f16, rows, y, nb, out),
            (Isa::Vnni, Format::Q8_0) => vnni::dot_q8_0(f16, rows, y, nb, out),
            (Isa::Avx2, Format::Q4_1) => avx2::dot_q4_1(f16, rows, y, nb, out),
            (Isa::Avx2, Format::Q5_0) => avx2::dot_q5_0(f16, rows, y, nb, out),
            (Isa::Avx2, Format::Q8_0) => avx2::dot_q8_0(f16, rows, y, nb, out),
            (_, Format::Q6K) => x86::dot_q6_k(f16, rows, y, nb, out),
        }
    }
}
