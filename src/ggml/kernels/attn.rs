//! Attention for decode steps: one query token per sequence, over f16 K and V caches, for
//! several sequences in one op, with ggml's flash-attention arithmetic row for row.
//!
//! ggml's CPU flash attention computes one query row (one head of one token) at a time, cell
//! by cell: a dot product with the K row, the online softmax (one `expf`), and `VKQ +=
//! v·e^(s-M)` into an f16 accumulator in memory, rounded back to f16 after every cell. Each
//! cell waits on the last through that accumulator (store, reload, convert, FMA, convert) and
//! on its K and V rows from memory (a step's caches are far larger than the CPU's caches), so
//! a decode step of 8 SmolLM2 sequences spent a third of its time there, in one op per
//! sequence and layer. This op takes the query heads that share a K/V head together, 16
//! visible cells at a time in three passes: all scores (independent dot products, each K row
//! converted once for all the rows where heads are 64 or 128 wide; the rows of the next cells
//! prefetched), then each row's maxima, exponentials and sums in order, then the accumulators
//! cell by cell, two rows (four with AVX-512 VL's 32 registers) and 32 dimensions at a time in
//! registers (f32 values rounded to f16, the same numbers): eight (sixteen) independent chains
//! side by side. It
//! does up to [`SEQS_PER_OP`] sequences of a step in one op (the masks are its sources, the K
//! and V views named in its user data), threads claiming (sequence, K/V head) units as they go.
//!
//! Every row's arithmetic is ggml's, step for step, on the builds it reproduces (ggml compiled
//! by GCC, which fuses `S·ms + vs`, with f16 vectors of f32 lanes: 256-bit F16C ones, or
//! AVX-512 ones without AVX-512 FP16): the query rounded to f16; the dot product in four
//! 8-lane accumulators over 32-value steps (AVX-512: four 16-lane ones over 64-value steps,
//! the rest in double) and ggml's reduction order; scale,
//! soft-cap, mask; the running maximum, `expf` from the same C library; V scaled and
//! accumulated with one FMA per value, rounded to f16. Where ggml splits the cells of a lone
//! decoding row across threads (f16 caches, 512 cells or more), the row is computed chunk by
//! chunk as ggml's threads would and the chunks reduced in ggml's order. So a sequence's
//! result is what ggml's op gives it alone, bit for bit
//! (`the_attention_op_gives_ggml_results_bit_for_bit`).

use std::ffi::{c_int, c_void};
use std::ops::Range;

use ggml_sys as sys;

use super::route::Machine;
use super::{Context, Tensor, Type, ViewPairs};

/// Sequences one op takes: each brings its mask as a source after the queries (a custom ggml
/// op has at most nine); their K and V views are named in the op's user data ([`DecodeKv`]).
pub const SEQS_PER_OP: usize = 8;

/// Most query heads taken together over one K/V head (more are taken in turns).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const GROUP: usize = 8;

/// Largest head size handled (the accumulators live on the stack).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const MAX_HEAD: usize = 256;

/// One sequence's operands: the cache's first `n_kv` cells of one layer as `[head_dim,
/// n_head_kv, n_kv]` views (f16, as the cache stores them), and its mask `[n_kv, 1]` (f16).
#[derive(Clone, Copy)]
pub struct SeqAttn<'a> {
    pub k: Tensor<'a>,
    pub v: Tensor<'a>,
    pub mask: Tensor<'a>,
}

/// Whether this build runs the op at all: ggml's f16 vectors are ones the op reproduces —
/// the 256-bit F16C ones, or (ggml built for AVX-512 F without AVX-512 FP16) 512-bit ones of
/// f32 lanes converted from f16 — and its compiler fuses multiply-adds (GCC), as the op
/// reproduces; this CPU has AVX2, FMA and F16C.
pub fn available() -> bool {
    width().is_some()
}

/// The lanes of ggml's f16 dot product on this build (8 or 16; see [`available`]), `None`
/// where the op does not run.
fn width() -> Option<usize> {
    static WIDTH: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *WIDTH.get_or_init(detect_width)
}

/// [`width`], found.
fn detect_width() -> Option<usize> {
    if !cfg!(target_arch = "x86_64") {
        return None;
    }
    let m = Machine::get();
    // SAFETY: constants of ggml's build, no arguments, no side effects.
    let (ggml_avx2, ggml_avx512) = unsafe {
        (
            sys::ggml_cpu_has_avx2() != 0
                && sys::ggml_cpu_has_fma() != 0
                && sys::ggml_cpu_has_f16c() != 0,
            sys::ggml_cpu_has_avx512() != 0,
        )
    };
    if !(m.avx2 && m.ggml_fuses_mul_add && ggml_avx2) {
        return None;
    }
    if !ggml_avx512 {
        return Some(8);
    }
    // ggml built for AVX-512 is built for this CPU (`-march=native`): with AVX-512 FP16 its
    // f16 vectors hold halves, not f32 lanes
    (!fp16_cpu()).then_some(16)
}

/// Whether this CPU has AVX-512 FP16.
fn fp16_cpu() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::is_x86_feature_detected!("avx512fp16");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether the op takes these operands: `q` `[head_dim, n_head, n_seq]` f32 (one token per
/// sequence), each sequence's K and V f16 views of whole heads, its mask f16 over the same
/// cells, head sizes multiples of 32 up to [`MAX_HEAD`].
pub fn takes(q: Tensor<'_>, seqs: &[SeqAttn<'_>]) -> bool {
    seqs.len() <= SEQS_PER_OP && takes_heads(q, seqs, seqs.len() as i64)
}

/// The checks shared by [`takes`] and [`takes_rows`]: `q` `[head_dim, n_head, n_q]` f32, the
/// sequences' K and V f16 views of whole heads (as many K/V heads and V head sizes as the
/// first: the op reads every sequence's by it), masks f16 over the same cells.
fn takes_heads(q: Tensor<'_>, seqs: &[SeqAttn<'_>], n_q: i64) -> bool {
    let qn = q.ne();
    if !available()
        || seqs.is_empty()
        || q.ty() != Type::F32
        || q.nb()[0] != 4
        || qn[2] != n_q
        || qn[3] != 1
    {
        return false;
    }
    seqs.iter().all(|s| {
        let (kn, vn, mn) = (s.k.ne(), s.v.ne(), s.mask.ne());
        let head = |n: [i64; 4]| n[0] % 32 == 0 && n[0] > 0 && n[0] <= MAX_HEAD as i64;
        s.k.ty() == Type::F16
            && s.v.ty() == Type::F16
            && s.mask.ty() == Type::F16
            && s.k.nb()[0] == 2
            && s.v.nb()[0] == 2
            && s.mask.nb()[0] == 2
            && head(kn)
            && head(vn)
            && kn[0] == qn[0]
            && kn[1] == vn[1]
            && kn[1] > 0
            && qn[1] % kn[1] == 0
            && kn[2] == vn[2]
            && kn[3] == 1
            && vn[3] == 1
            && mn[0] == kn[2]
            && vn[0] == seqs[0].v.ne()[0]
            && kn[1] == seqs[0].k.ne()[1]
    })
}

/// Prompt micro-batches shorter than this attend row by row in ggml (longer ones by its tiled
/// path, in another order): the rows [`Context::attn_rows`] computes as ggml does.
pub const MAX_ROWS: i64 = 64;

/// Whether [`Context::attn_rows`] takes these operands: `q` `[head_dim, n_head, n]` f32 with
/// 2 ≤ n < [`MAX_ROWS`], one sequence's K and V views and its mask `[n_kv, ≥ n]`, as
/// [`takes`] asks of each sequence.
pub fn takes_rows(q: Tensor<'_>, seq: &SeqAttn<'_>) -> bool {
    let n = q.ne()[2];
    let mn = seq.mask.ne();
    (2..MAX_ROWS).contains(&n)
        && mn[1] >= n
        && mn[2] == 1
        && mn[3] == 1
        && seq.mask.nb()[1] == 2 * mn[0] as usize
        && takes_heads(q, std::slice::from_ref(seq), n)
}

impl Context {
    /// `softmax(q·kᵀ·scale + mask)·v` for the `n` query tokens of one sequence's prompt
    /// micro-batch (fewer than [`MAX_ROWS`]), token i masked by row i of the mask: `[head_dim_v
    /// · n_head, n]`, as `flash_attn_ext` (f32 precision) gives it, reshaped to rows. The
    /// operands must be ones [`takes_rows`] accepts.
    pub fn attn_rows<'a>(
        &'a self,
        q: Tensor<'a>,
        seq: &SeqAttn<'a>,
        scale: f32,
        softcap: f32,
    ) -> Tensor<'a> {
        assert!(takes_rows(q, seq), "attn_rows: operands not supported");
        self.rows_op(q, seq, scale, softcap, attn_rows_op)
    }

    /// An op whose `body` attends the `n` query rows of `q` over one sequence's K, V and mask
    /// (its sources, in that order after the queries; scale and soft-cap in its user data):
    /// `[head_dim_v · n_head, n]`.
    pub(super) fn rows_op<'a>(
        &'a self,
        q: Tensor<'a>,
        seq: &SeqAttn<'a>,
        scale: f32,
        softcap: f32,
        body: super::OpBody,
    ) -> Tensor<'a> {
        let ne = [seq.v.ne()[0] * q.ne()[1], q.ne()[2]];
        let srcs = [q, seq.k, seq.v, seq.mask];
        self.custom_op_user(Type::F32, ne, &srcs, pack(scale, softcap), body)
    }

    /// `softmax(q·kᵀ·scale + mask)·v` for each sequence's one query token: `[head_dim_v ·
    /// n_head, n_seq]`, as `flash_attn_ext` (f32 precision) gives each sequence alone,
    /// reshaped to rows. `softcap` 0: none. The operands must be ones [`takes`] accepts.
    pub fn attn_decode<'a>(
        &'a self,
        q: Tensor<'a>,
        seqs: &[SeqAttn<'a>],
        scale: f32,
        softcap: f32,
    ) -> Tensor<'a> {
        assert!(takes(q, seqs), "attn_decode: operands not supported");
        let kv = DecodeKv {
            scale,
            softcap,
            seqs: ViewPairs::new(self, "attn_decode", seqs.iter().map(|s| (s.k, s.v))),
            claims: Default::default(),
        };
        let user = self.keep(kv) as *mut c_void;
        let mut srcs = vec![q];
        srcs.extend(seqs.iter().map(|s| s.mask));
        let ne = [seqs[0].v.ne()[0] * q.ne()[1], seqs.len() as i64];
        self.custom_op_user(Type::F32, ne, &srcs, user, attn_op)
    }
}

/// The decode op's user data: its parameters and each sequence's K and V views. Only the
/// masks are sources, so one op takes many sequences; the views of the caches need no source
/// edge for the order either, as the cache writes before them are placed in the graph first
/// (as for ggml's own attention over a cache).
struct DecodeKv {
    scale: f32,
    softcap: f32,
    seqs: ViewPairs,
    /// The op's threads share its (sequence, K/V head) units as they go.
    claims: super::claims::Claims,
}

/// One sequence's operands as the op reads them.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[derive(Clone, Copy)]
struct Seq {
    k: *const u8,
    v: *const u8,
    mask: *const u16,
    /// Bytes between heads and between cells, in K and in V.
    k_head: usize,
    k_cell: usize,
    v_head: usize,
    v_cell: usize,
    n_kv: usize,
}

#[cfg(target_arch = "x86_64")]
impl Seq {
    /// K and V views `[head_dim, n_head_kv, n_kv]` and the mask row at `mask`.
    fn of(k: &sys::ggml_tensor, v: &sys::ggml_tensor, mask: *const u16) -> Seq {
        Seq {
            k: k.data as *const u8,
            v: v.data as *const u8,
            mask,
            k_head: k.nb[1],
            k_cell: k.nb[2],
            v_head: v.nb[1],
            v_cell: v.nb[2],
            n_kv: k.ne[2] as usize,
        }
    }
}

/// The two f32 parameters (scale, soft-cap) in the ops' user-data word (the ops are x86-64
/// only: a 64-bit word).
fn pack(scale: f32, softcap: f32) -> *mut c_void {
    (((scale.to_bits() as u64) << 32) | softcap.to_bits() as u64) as usize as *mut c_void
}

/// [`pack`]'s two parameters back.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) fn unpack(user: *mut c_void) -> (f32, f32) {
    let user = user as usize as u64;
    (
        f32::from_bits((user >> 32) as u32),
        f32::from_bits(user as u32),
    )
}

/// The prompt-rows op's body: thread `ith` of `nth` takes its share of the rows (token,
/// head), in runs of heads that share a K/V head.
///
/// # Safety
/// Called by ggml's CPU backend with `dst` made by [`Context::attn_rows`]: sources the
/// queries, K, V and mask (checked by [`takes_rows`]), all data allocated in host memory;
/// `user` the packed parameters.
unsafe extern "C" fn attn_rows_op(
    dst: *mut sys::ggml_tensor,
    ith: c_int,
    nth: c_int,
    user: *mut c_void,
) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: ggml passes the live result tensor, whose sources are the op's operands.
        let dst = unsafe { &*dst };
        // SAFETY: the op was built with these four sources, live for the graph's computation.
        let (q, k, v, m) = unsafe { (&*dst.src[0], &*dst.src[1], &*dst.src[2], &*dst.src[3]) };
        let p = Params::of(q, k, v, user, nth, false);
        let nh = p.n_head;
        let mine = super::share(q.ne[2] as usize * nh, ith, nth);
        if mine.is_empty() {
            return;
        }
        for t in mine.start / nh..=(mine.end - 1) / nh {
            let heads = mine.start.max(t * nh) - t * nh..mine.end.min((t + 1) * nh) - t * nh;
            let mask = (m.data as *const u8).wrapping_add(t * m.nb[1]) as *const u16;
            // SAFETY: token t's rows of the queries and the output, mask row t of n_kv
            // values, K and V over n_kv cells (checked by `takes_rows`); this CPU has AVX2,
            // FMA and F16C (`available`).
            unsafe { attend_heads(&p, &Seq::of(k, v, mask), q, dst, t, heads) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (dst, ith, nth, user);
}

/// The op's body: thread `ith` of `nth` computes the query heads of the (sequence, K/V head)
/// units it claims.
///
/// # Safety
/// Called by ggml's CPU backend with `dst` made by [`Context::attn_decode`]: sources the
/// queries and each sequence's mask, `user` the [`DecodeKv`] naming each sequence's K and V
/// (checked by [`takes`]), all data allocated in host memory.
unsafe extern "C" fn attn_op(
    dst: *mut sys::ggml_tensor,
    ith: c_int,
    nth: c_int,
    user: *mut c_void,
) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: ggml passes the live result tensor, whose sources are the op's operands.
        let dst = unsafe { &*dst };
        // SAFETY: source 0 is the queries, live for the graph's computation.
        let q = unsafe { &*dst.src[0] };
        // SAFETY: `user` is the `DecodeKv` that `attn_decode` kept in the op's context.
        let kv = unsafe { &*(user as *const DecodeKv) };
        let seqs: Vec<Seq> = (0..kv.seqs.len())
            .map(|i| {
                // SAFETY: source 1 + i is sequence i's mask; pair i its K and V views, kept
                // with the op's (live, computing) context.
                let ((k, v), m) = unsafe { (kv.seqs.get(i), &*dst.src[1 + i]) };
                Seq::of(k, v, m.data as *const u16)
            })
            .collect();
        // SAFETY: as above: sequence 0's K and V (every sequence's have the same heads).
        let (k, v) = unsafe { kv.seqs.get(0) };
        let p = Params::new(kv.scale, kv.softcap, q, k, v, nth, true);
        // Units of (sequence, K/V head): its query heads over its cells, shared by the
        // threads as they go (`claims.rs`).
        let g = p.n_head / p.n_head_kv;
        let n = seqs.len() * p.n_head_kv;
        kv.claims.run(n, ith.max(0) as usize, p.nth, |units| {
            for u in units {
                let (si, kvh) = (u / p.n_head_kv, u % p.n_head_kv);
                // SAFETY: sequence si's rows of the queries and the output; its K, V and mask
                // over n_kv cells (checked by `takes`); this CPU has AVX2, FMA and F16C
                // (`available`).
                unsafe { attend_heads(&p, &seqs[si], q, dst, si, kvh * g..(kvh + 1) * g) };
            }
        });
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (dst, ith, nth, user);
}

/// Query heads `heads` of token `t` (row t of the queries, column t of the output) over
/// sequence `s`, in runs of heads that share a K/V head, at most [`GROUP`] at a time.
///
/// # Safety
/// `q` and `dst` are an op's live queries and result, `s` the operands token t attends to,
/// as the op bodies check them; the CPU has AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
unsafe fn attend_heads(
    p: &Params,
    s: &Seq,
    q: &sys::ggml_tensor,
    dst: &sys::ggml_tensor,
    t: usize,
    heads: Range<usize>,
) {
    let g = p.n_head / p.n_head_kv;
    let mut rows = [(std::ptr::null::<f32>(), std::ptr::null_mut::<f32>()); GROUP];
    let mut h = heads.start;
    while h < heads.end {
        let kvh = h / g;
        let end = heads.end.min((kvh + 1) * g).min(h + GROUP);
        for (r, hr) in rows.iter_mut().zip(h..end) {
            let qp = (q.data as *const u8).wrapping_add(t * q.nb[2] + hr * q.nb[1]);
            let op = (dst.data as *mut u8).wrapping_add(t * dst.nb[1] + hr * p.dv * 4);
            *r = (qp as *const f32, op as *mut f32);
        }
        // SAFETY: heads h..end of token t, all over K/V head kvh (see above).
        unsafe { x86::group(p, s, kvh, &rows[..end - h]) };
        h = end;
    }
}

/// The op's parameters, as ggml's flash attention reads them.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Params {
    scale: f32,
    softcap: f32,
    dk: usize,
    dv: usize,
    n_head: usize,
    n_head_kv: usize,
    /// Threads of the op: a lone decoding row of 512 cells or more is split as ggml's that
    /// many threads split it.
    nth: usize,
    /// Rows are lone decoding rows (ggml splits the long ones), not a prompt's (never split).
    split: bool,
    /// ggml's f16 dot product has 16 lanes (AVX-512), not 8.
    wide: bool,
    /// The CPU has AVX-512 F and VL (thirty-two vector registers for 256-bit vectors).
    vl: bool,
}

#[cfg(target_arch = "x86_64")]
impl Params {
    /// The parameters of an op over queries `q` and K/V views `k`, `v` (`[head_dim,
    /// n_head_kv, n_kv]`), its packed user data, `nth` threads.
    fn of(
        q: &sys::ggml_tensor,
        k: &sys::ggml_tensor,
        v: &sys::ggml_tensor,
        user: *mut c_void,
        nth: c_int,
        split: bool,
    ) -> Params {
        let (scale, softcap) = unpack(user);
        Params::new(scale, softcap, q, k, v, nth, split)
    }

    /// As [`Params::of`], the two parameters given.
    fn new(
        scale: f32,
        softcap: f32,
        q: &sys::ggml_tensor,
        k: &sys::ggml_tensor,
        v: &sys::ggml_tensor,
        nth: c_int,
        split: bool,
    ) -> Params {
        Params {
            scale,
            softcap,
            dk: q.ne[0] as usize,
            dv: v.ne[0] as usize,
            n_head: q.ne[1] as usize,
            n_head_kv: k.ne[1] as usize,
            nth: nth.max(1) as usize,
            split,
            wide: width() == Some(16),
            vl: Machine::get().avx512vl,
        }
    }
}

/// Cells from which ggml's flash attention splits a lone decoding row's cells across its
/// threads (f16 K and V).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const SPLIT_FROM: usize = 512;

/// Visible cells taken together (see `x86::cells`).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const BLOCK: usize = 16;

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use std::arch::x86_64::*;

    use super::{Params, Seq, BLOCK, GROUP, MAX_HEAD, SPLIT_FROM};

    /// One row's running state over a range of cells: maximum, sum, and the accumulator
    /// (f32 values that are f16 numbers, as ggml's f16 accumulator holds them).
    struct Partial {
        m: f32,
        s: f32,
        acc: [f32; MAX_HEAD],
    }

    /// Query rows `rows` (query, output) of sequence `s`, all over K/V head `kvh`.
    ///
    /// # Safety
    /// As in `attn_op`; the CPU has AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn group(p: &Params, s: &Seq, kvh: usize, rows: &[(*const f32, *mut f32)]) {
        // SAFETY: the caller's promises, passed on.
        unsafe {
            if p.wide {
                group_in::<true>(p, s, kvh, rows)
            } else {
                group_in::<false>(p, s, kvh, rows)
            }
        }
    }

    /// [`group`] where ggml's f16 dot product has 16 lanes (`WIDE`) or 8.
    ///
    /// # Safety
    /// As [`group`].
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn group_in<const WIDE: bool>(
        p: &Params,
        s: &Seq,
        kvh: usize,
        rows: &[(*const f32, *mut f32)],
    ) {
        let g = rows.len();
        debug_assert!(g <= GROUP);
        // the queries rounded to f16, as ggml converts them for its f16 dot product
        let mut qf = [[0f32; MAX_HEAD]; GROUP];
        for (r, &(qp, _)) in rows.iter().enumerate() {
            for i in (0..p.dk).step_by(8) {
                // SAFETY: a query row holds dk floats.
                let x = unsafe { _mm256_loadu_ps(qp.add(i)) };
                let h = _mm256_cvtps_ph::<0>(x);
                // SAFETY: i + 8 <= dk <= MAX_HEAD.
                unsafe { _mm256_storeu_ps(qf[r].as_mut_ptr().add(i), _mm256_cvtph_ps(h)) };
            }
        }
        let new = || Partial {
            m: f32::NEG_INFINITY,
            s: 0.0,
            acc: [0.0; MAX_HEAD],
        };
        let mut parts: [Partial; GROUP] = std::array::from_fn(|_| new());
        let k = s.k.wrapping_add(kvh * s.k_head);
        let v = s.v.wrapping_add(kvh * s.v_head);
        if !p.split || s.n_kv < SPLIT_FROM {
            // SAFETY: cells 0..n_kv exist in K, V and the mask.
            unsafe { cells::<WIDE>(p, s, k, v, &qf[..g], 0..s.n_kv, &mut parts[..g]) };
            for (r, part) in parts[..g].iter().enumerate() {
                let inv = if part.s == 0.0 { 0.0 } else { 1.0 / part.s };
                // SAFETY: an output row holds dv floats.
                unsafe { finish(&part.acc[..p.dv], inv, rows[r].1) };
            }
            return;
        }
        // ggml's split: thread t of nth takes cells [t·c, (t+1)·c), c = ⌈n_kv / nth⌉; the
        // partial results are then reduced in thread order.
        let chunk = s.n_kv.div_ceil(p.nth);
        let mut fin: [Partial; GROUP] = std::array::from_fn(|_| new());
        for t in 0..p.nth {
            let start = t * chunk;
            if start >= s.n_kv {
                continue;
            }
            let end = (start + chunk).min(s.n_kv);
            for part in parts[..g].iter_mut() {
                part.m = f32::NEG_INFINITY;
                part.s = 0.0;
                part.acc[..p.dv].fill(0.0);
            }
            // SAFETY: as above, a sub-range.
            unsafe { cells::<WIDE>(p, s, k, v, &qf[..g], start..end, &mut parts[..g]) };
            for (f, part) in fin[..g].iter_mut().zip(&parts[..g]) {
                if part.s == 0.0 {
                    continue;
                }
                let m = f.m.max(part.m);
                let old = (f.m - m).exp();
                let new = (part.m - m).exp();
                // GCC fuses `a·old + b·new` into fma(a, old, b·new)
                for d in 0..p.dv {
                    f.acc[d] = f.acc[d].mul_add(old, part.acc[d] * new);
                }
                f.s = f.s.mul_add(old, part.s * new);
                f.m = m;
            }
        }
        for (r, f) in fin[..g].iter().enumerate() {
            let inv = if f.s != 0.0 { 1.0 / f.s } else { 1.0 };
            // SAFETY: as above.
            unsafe { finish(&f.acc[..p.dv], inv, rows[r].1) };
        }
    }

    /// `out = acc · inv`.
    ///
    /// # Safety
    /// `out` holds `acc.len()` floats.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn finish(acc: &[f32], inv: f32, out: *mut f32) {
        for (d, a) in acc.iter().enumerate() {
            // SAFETY: d < acc.len().
            unsafe { *out.add(d) = a * inv };
        }
    }

    /// The accumulators of rows `h..h + N`, as raw pointers from one base (no row is borrowed
    /// again after a pointer to it is taken).
    ///
    /// # Safety
    /// h + N <= parts.len().
    unsafe fn accs<const N: usize>(parts: &mut [Partial], h: usize) -> [*mut f32; N] {
        let base = parts.as_mut_ptr();
        // SAFETY: h + i < h + N <= parts.len().
        std::array::from_fn(|i| unsafe {
            std::ptr::addr_of_mut!((*base.add(h + i)).acc) as *mut f32
        })
    }

    /// f16 bits to f32 (also the quantized-cache op's, `attn_quant`).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(in super::super) fn half(bits: u16) -> f32 {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
    }

    /// The rows' online softmax over `range` of cells, continuing `parts`. The visible cells
    /// are taken [`BLOCK`] at a time in three passes: every row's scores (independent dot
    /// products), then each row's running maximum, exponentials and sum in cell order, then
    /// the accumulators, cell by cell in order but several rows and dimensions at once, held
    /// in registers: the f16 rounding after each cell makes that a chain of dependent
    /// operations, and only many of them side by side keep the core busy.
    ///
    /// # Safety
    /// `k` and `v` point at the K/V head's first cell, `s`'s strides apart; the cells of
    /// `range` exist in them and in the mask.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn cells<const WIDE: bool>(
        p: &Params,
        s: &Seq,
        k: *const u8,
        v: *const u8,
        qf: &[[f32; MAX_HEAD]],
        range: std::ops::Range<usize>,
        parts: &mut [Partial],
    ) {
        let softcap = p.softcap;
        let scale = if softcap != 0.0 {
            p.scale / softcap
        } else {
            p.scale
        };
        let (dk, dv, g) = (p.dk, p.dv, qf.len());
        // cell c's K and V rows into the first-level cache (a hint: never faults)
        let prefetch = |c: usize| {
            for line in (0..dk * 2).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(k.wrapping_add(c * s.k_cell + line) as *const i8);
            }
            for line in (0..dv * 2).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(v.wrapping_add(c * s.v_cell + line) as *const i8);
            }
        };
        let mut ic = range.start;
        (ic..(ic + BLOCK).min(range.end)).for_each(prefetch);
        let mut idx = [0usize; BLOCK];
        let mut xs = [[0f32; BLOCK]; GROUP];
        let mut ms = [[1f32; BLOCK]; GROUP];
        let mut vs = [[1f32; BLOCK]; GROUP];
        while ic < range.end {
            // the next BLOCK visible cells, prefetching the rows of the cells a block on
            // (whose loads would otherwise stall the passes: the caches of a step's
            // sequences and layers are far larger than the CPU's caches)
            let mut n = 0;
            while ic < range.end && n < BLOCK {
                prefetch(ic + BLOCK);
                // SAFETY: ic < n_kv, the mask's length.
                let mv = half(unsafe { *s.mask.add(ic) });
                if mv != f32::NEG_INFINITY {
                    idx[n] = ic;
                    for x in xs[..g].iter_mut() {
                        x[n] = mv;
                    }
                    n += 1;
                }
                ic += 1;
            }
            // scores
            for j in 0..n {
                let kr = k.wrapping_add(idx[j] * s.k_cell) as *const __m128i;
                // SAFETY: K rows hold dk halves; each row of qf dk floats.
                let dots: [f32; GROUP] = unsafe {
                    match dk {
                        // the K row converted once for every row of the group
                        64 if WIDE => dots64::<1>(kr, qf),
                        128 if WIDE => dots64::<2>(kr, qf),
                        _ => std::array::from_fn(|r| match qf.get(r) {
                            Some(qr) => dot::<WIDE>(kr, qr.as_ptr(), dk),
                            None => 0.0,
                        }),
                    }
                };
                for (x, d) in xs[..g].iter_mut().zip(dots) {
                    let mut y = d * scale;
                    if softcap != 0.0 {
                        y = softcap * y.tanh();
                    }
                    x[j] += y;
                }
            }
            // ggml: a new maximum scales the sum and accumulator by e^(M_old - x) and adds V
            // once; else V is added times e^(x - M). Both exponents are -|x - M| (IEEE
            // subtraction is antisymmetric): one expf, no branch.
            for h in 0..g {
                let part = &mut parts[h];
                for j in 0..n {
                    let x = xs[h][j];
                    let gt = x > part.m;
                    let e = (-(x - part.m).abs()).exp();
                    let (m, w) = if gt { (e, 1.0) } else { (1.0, e) };
                    part.m = if gt { x } else { part.m };
                    part.s = part.s.mul_add(m, w);
                    ms[h][j] = m;
                    vs[h][j] = w;
                }
            }
            let vrow = |j: usize| v.wrapping_add(idx[j] * s.v_cell) as *const __m128i;
            let mut h = 0;
            while h < g {
                // rows h.. in a run of up to four (AVX-512 VL) or two
                let take = (g - h).min(if p.vl { 4 } else { 2 });
                let (m, w) = (&ms[h..h + take], &vs[h..h + take]);
                // SAFETY: rows h..h + take exist (take <= g - h), their accumulators hold
                // MAX_HEAD >= dv floats, the V rows dv halves; `p.vl`: the CPU has AVX-512 F
                // and VL.
                unsafe {
                    match (p.vl, take) {
                        (true, 4) => accumulate_vl::<4>(accs(parts, h), &vrow, m, w, n, dv),
                        (true, 3) => accumulate_vl::<3>(accs(parts, h), &vrow, m, w, n, dv),
                        (true, 2) => accumulate_vl::<2>(accs(parts, h), &vrow, m, w, n, dv),
                        (true, _) => accumulate_vl::<1>(accs(parts, h), &vrow, m, w, n, dv),
                        (false, 2) => accumulate::<2>(accs(parts, h), &vrow, m, w, n, dv),
                        (false, _) => accumulate::<1>(accs(parts, h), &vrow, m, w, n, dv),
                    }
                }
                h += take;
            }
        }
    }

    /// `acc = f16(v · vs + f16(acc · ms))` for `n` cells in order, for `H` rows: ggml's
    /// scaling of its f16 accumulator (where `ms` is not 1; scaling by 1 leaves f16 values
    /// as they are), then its accumulation of V, one FMA per value. 32 dimensions of each row
    /// at a time, in registers: `4·H` chains of dependent operations (FMA, rounding to f16 and
    /// back) side by side. [`accumulate`] takes two rows at most (sixteen vector registers);
    /// [`accumulate_vl`], where AVX-512 VL gives thirty-two, four (measured by `attn_timing`,
    /// Ice Lake, one thread: 23.3 → 21.0–21.7 ns per head and cell with SmolLM2's three rows
    /// per K/V head, 19.5 → 18.0 with Qwen2.5 0.5B's seven).
    ///
    /// # Safety
    /// Each accumulator holds `dv` floats, each V row (`vrow(j)`, j < n) `dv` halves; `dv` a
    /// multiple of 32; [`accumulate_vl`] on a CPU with AVX-512 F and VL.
    macro_rules! accumulate_fn {
        ($name:ident, $features:literal) => {
            #[target_feature(enable = $features)]
            unsafe fn $name<const H: usize>(
                accs: [*mut f32; H],
                vrow: &impl Fn(usize) -> *const __m128i,
                ms: &[[f32; BLOCK]],
                vs: &[[f32; BLOCK]],
                n: usize,
                dv: usize,
            ) {
                let round = |a: __m256| _mm256_cvtph_ps(_mm256_cvtps_ph::<0>(a));
                for d in (0..dv).step_by(32) {
                    let mut a = [[_mm256_setzero_ps(); 4]; H];
                    for (r, acc) in a.iter_mut().zip(accs) {
                        for (i, x) in r.iter_mut().enumerate() {
                            // SAFETY: d + 8i + 8 <= dv.
                            *x = unsafe { _mm256_loadu_ps(acc.add(d + 8 * i)) };
                        }
                    }
                    for j in 0..n {
                        let vp = vrow(j);
                        // SAFETY: d + 32 <= dv halves in the row.
                        let x: [__m256; 4] = std::array::from_fn(|i| unsafe {
                            _mm256_cvtph_ps(_mm_loadu_si128(vp.add(d / 8 + i)))
                        });
                        add_cell(&mut a, &x, ms, vs, j, round);
                    }
                    for (r, acc) in a.iter().zip(accs) {
                        for (i, x) in r.iter().enumerate() {
                            // SAFETY: as above.
                            unsafe { _mm256_storeu_ps(acc.add(d + 8 * i), *x) };
                        }
                    }
                }
            }
        };
    }
    accumulate_fn!(accumulate, "avx2,fma,f16c");
    accumulate_fn!(accumulate_vl, "avx2,fma,f16c,avx512f,avx512vl");

    /// Cell `j` of a run of accumulators (32 dimensions of `H` rows) and its V values `x`: for
    /// each row, ggml's scaling of the accumulator where `ms` is not 1 (scaling by 1 leaves it
    /// as it is), then its addition of V times `vs`, one FMA per value, each result through
    /// `round` (to f16 and back for ggml's f16 accumulator; nothing for its f32 one). Inlined
    /// into the accumulation loops of this op and of the quantized-cache op (`attn_quant`),
    /// whose features (AVX2, FMA) it takes.
    #[inline(always)]
    pub(in super::super) fn add_cell<const H: usize>(
        a: &mut [[__m256; 4]; H],
        x: &[__m256; 4],
        ms: &[[f32; BLOCK]],
        vs: &[[f32; BLOCK]],
        j: usize,
        round: impl Fn(__m256) -> __m256,
    ) {
        for (h, r) in a.iter_mut().enumerate() {
            let m = ms[h][j];
            // SAFETY: AVX and FMA, which every caller (an accumulation loop) is compiled for.
            unsafe {
                if m != 1.0 {
                    let m = _mm256_set1_ps(m);
                    for y in r.iter_mut() {
                        *y = round(_mm256_mul_ps(*y, m));
                    }
                }
                let w = _mm256_set1_ps(vs[h][j]);
                for (y, x) in r.iter_mut().zip(x) {
                    *y = round(_mm256_fmadd_ps(*x, w, *y));
                }
            }
        }
    }

    /// ggml's f16 dot product of `n` values, its AVX-512 form (`WIDE`) or its AVX2 one.
    ///
    /// # Safety
    /// `k` holds `n` halves, `q` `n` floats; `n` a multiple of 32.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn dot<const WIDE: bool>(k: *const __m128i, q: *const f32, n: usize) -> f32 {
        // SAFETY: the caller's promises, passed on.
        unsafe {
            if WIDE {
                dot16(k, q, n)
            } else {
                dot8(k, q, n)
            }
        }
    }

    /// [`dot16`] of each row of `qf` (at most [`GROUP`]; the rest 0) with the K row at `kr`
    /// of `64·S` values, converted once for all the rows.
    ///
    /// # Safety
    /// `kr` holds `64·S` halves, each row of `qf` as many floats.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn dots64<const S: usize>(kr: *const __m128i, qf: &[[f32; MAX_HEAD]]) -> [f32; GROUP] {
        // SAFETY: 8·S chunks of 8 halves in the row.
        let kx: [[__m256; 8]; S] = std::array::from_fn(|i| {
            std::array::from_fn(|c| unsafe { _mm256_cvtph_ps(_mm_loadu_si128(kr.add(8 * i + c))) })
        });
        let mut out = [0.0; GROUP];
        for (qr, o) in qf.iter().zip(out.iter_mut()) {
            // chunk c of ggml's accumulators (see `reduce16`), summed over the steps in order
            let p: [__m256; 8] = std::array::from_fn(|c| {
                let mut acc = _mm256_setzero_ps();
                for (i, k) in kx.iter().enumerate() {
                    // SAFETY: 64·i + 8·c + 8 <= 64·S floats in the row.
                    let q = unsafe { _mm256_loadu_ps(qr.as_ptr().add(64 * i + 8 * c)) };
                    acc = _mm256_fmadd_ps(k[c], q, acc);
                }
                acc
            });
            *o = reduce16(&p);
        }
        out
    }

    /// ggml's reduction of its four 16-lane f16-dot accumulators, given as eight 8-lane chunks
    /// (chunk `2j + h`: half `h` of accumulator `j`): the four to one, then GCC's
    /// `_mm512_reduce_add_ps` (upper 256 bits plus lower, upper 128 plus lower, lanes 0 + 2 and
    /// 1 + 3, then those two).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn reduce16(p: &[__m256; 8]) -> f32 {
        let x: [__m256; 2] = std::array::from_fn(|h| {
            _mm256_add_ps(
                _mm256_add_ps(p[h], p[4 + h]),
                _mm256_add_ps(p[2 + h], p[6 + h]),
            )
        });
        let t3 = _mm256_add_ps(x[1], x[0]);
        let t6 = _mm_add_ps(_mm256_extractf128_ps::<1>(t3), _mm256_castps256_ps128(t3));
        let t8 = _mm_add_ps(t6, _mm_movehl_ps(t6, t6));
        _mm_cvtss_f32(t8) + _mm_cvtss_f32(_mm_shuffle_ps::<1>(t8, t8))
    }

    /// ggml's f16 dot product on AVX2: four 8-lane accumulators over 32-value steps, then its
    /// reduction (halves of the four, the two, the 128-bit halves, two horizontal adds).
    ///
    /// # Safety
    /// `k` holds `n` halves, `q` `n` floats; `n` a multiple of 32.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot8(k: *const __m128i, q: *const f32, n: usize) -> f32 {
        let mut sum = [_mm256_setzero_ps(); 4];
        for i in (0..n).step_by(32) {
            for (j, acc) in sum.iter_mut().enumerate() {
                // SAFETY: i + 8j + 8 <= n.
                let (kx, qy) = unsafe {
                    (
                        _mm256_cvtph_ps(_mm_loadu_si128(k.add(i / 8 + j))),
                        _mm256_loadu_ps(q.add(i + 8 * j)),
                    )
                };
                *acc = _mm256_fmadd_ps(kx, qy, *acc);
            }
        }
        let a = _mm256_add_ps(sum[0], sum[2]);
        let b = _mm256_add_ps(sum[1], sum[3]);
        let a = _mm256_add_ps(a, b);
        let t0 = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
        let t1 = _mm_hadd_ps(t0, t0);
        _mm_cvtss_f32(_mm_hadd_ps(t1, t1))
    }

    /// ggml's f16 dot product on AVX-512 (f32 lanes): four 16-lane accumulators over
    /// 64-value steps — each here as two 8-lane halves, the same sums lane for lane — then
    /// its reduction (the four to one, then GCC's `_mm512_reduce_add_ps`: upper 256 bits plus
    /// lower, upper 128 plus lower, lanes 0 + 2 and 1 + 3, then those two), and the values
    /// past the last whole step added in double precision.
    ///
    /// # Safety
    /// `k` holds `n` halves, `q` `n` floats; `n` a multiple of 32.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot16(k: *const __m128i, q: *const f32, n: usize) -> f32 {
        let mut sum = [[_mm256_setzero_ps(); 2]; 4];
        let whole = n & !63;
        for i in (0..whole).step_by(64) {
            for (j, acc) in sum.iter_mut().enumerate() {
                for (h, half) in acc.iter_mut().enumerate() {
                    let at = i + 16 * j + 8 * h;
                    // SAFETY: at + 8 <= whole <= n.
                    let (kx, qy) = unsafe {
                        (
                            _mm256_cvtph_ps(_mm_loadu_si128(k.add(at / 8))),
                            _mm256_loadu_ps(q.add(at)),
                        )
                    };
                    *half = _mm256_fmadd_ps(kx, qy, *half);
                }
            }
        }
        let chunks: [__m256; 8] = std::array::from_fn(|c| sum[c / 2][c % 2]);
        let mut sumf = reduce16(&chunks) as f64;
        for i in whole..n {
            // SAFETY: i < n.
            let (kv, qv) = unsafe { (*(k as *const u16).add(i), *q.add(i)) };
            sumf += (half(kv) * qv) as f64;
        }
        sumf as f32
    }
}
