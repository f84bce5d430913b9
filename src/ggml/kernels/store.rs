//! The cache writes of a decode step in one op: each sequence's new K and V rows (one token
//! each) rounded to f16 into the cell its index names, for up to [`SEQS_PER_OP`] sequences.
//!
//! ggml writes a cache with one `set_rows` per tensor, so a step of 8 sequences, each with a
//! cache of its own, took 16 of them per layer (now 2 ops): 16 nodes, each ending in a barrier
//! where the threads wait for each other, for a copy of a few hundred bytes. The values are
//! the same: f32 to f16 by the CPU's conversion, rounding to nearest even, as ggml's `set_rows`
//! converts them (F16C).

use std::ffi::{c_int, c_void};

use ggml_sys as sys;

use super::{Context, Tensor, Type, ViewPairs};

/// Sequences one op takes: each brings its index as a source after the K and V rows (a custom
/// ggml op has at most nine).
pub const SEQS_PER_OP: usize = 7;

/// One sequence's destination: its K and V caches of one layer as 2-d views `[width, cells]`
/// (f16, rows contiguous), and the I64 index `[1]` of the cell its token goes to.
#[derive(Clone, Copy)]
pub struct SeqStore<'a> {
    pub k_cache: Tensor<'a>,
    pub v_cache: Tensor<'a>,
    pub idx: Tensor<'a>,
}

/// Whether the op takes these operands: `k` and `v` `[head_dim, n_head_kv, n_seq]` f32, heads
/// contiguous in a token (views into a fused projection are fine), one token per sequence;
/// f16 caches of the same width with contiguous rows, a one-value I64 index each; this CPU
/// converts with F16C (the attention op's condition, which runs wherever this one does).
pub fn takes(k: Tensor<'_>, v: Tensor<'_>, seqs: &[SeqStore<'_>]) -> bool {
    let rows = |t: Tensor<'_>| {
        let (ne, nb) = (t.ne(), t.nb());
        t.ty() == Type::F32
            && nb[0] == 4
            && nb[1] == 4 * ne[0] as usize
            && ne[2] == seqs.len() as i64
            && ne[3] == 1
            && (ne[0] * ne[1]) % 8 == 0
    };
    let width = |t: Tensor<'_>| t.ne()[0] * t.ne()[1];
    let cache = |c: Tensor<'_>, w: i64| {
        let (ne, nb) = (c.ne(), c.nb());
        c.ty() == Type::F16 && ne[0] == w && nb[0] == 2 && nb[1] == 2 * w as usize && ne[2] == 1
    };
    super::attn::available()
        && !seqs.is_empty()
        && seqs.len() <= SEQS_PER_OP
        && rows(k)
        && rows(v)
        && seqs.iter().all(|s| {
            cache(s.k_cache, width(k))
                && cache(s.v_cache, width(v))
                && s.idx.ty() == Type::I64
                && s.idx.ne() == [1, 1, 1, 1]
        })
}

impl Context {
    /// Write token i's K and V rows (`k`, `v` `[head_dim, n_head_kv, n]`) to the cell named
    /// by `seqs[i].idx` of `seqs[i]`'s caches, rounded to f16: what `set_rows` gives, for all
    /// of them in one op. The result is a placeholder; expand it into the graph before any op
    /// that reads the caches. The operands must be ones [`takes`] accepts.
    pub fn store_rows<'a>(
        &'a self,
        k: Tensor<'a>,
        v: Tensor<'a>,
        seqs: &[SeqStore<'a>],
    ) -> Tensor<'a> {
        assert!(takes(k, v, seqs), "store_rows: operands not supported");
        let caches = ViewPairs::new(
            self,
            "store_rows",
            seqs.iter().map(|s| (s.k_cache, s.v_cache)),
        );
        let user = self.keep(caches) as *mut c_void;
        let mut srcs = vec![k, v];
        srcs.extend(seqs.iter().map(|s| s.idx));
        self.custom_op_user(Type::F32, [1, 1], &srcs, user, store_op)
    }
}

/// The op's body: thread `ith` of `nth` writes sequences `ith`, `ith + nth`, ….
///
/// # Safety
/// Called by ggml's CPU backend with `dst` made by [`Context::store_rows`]: sources the K and
/// V rows and each sequence's index, `user` the `ViewPairs` of its caches (checked by
/// [`takes`]), all data
/// allocated in host memory.
unsafe extern "C" fn store_op(
    dst: *mut sys::ggml_tensor,
    ith: c_int,
    nth: c_int,
    user: *mut c_void,
) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: ggml passes the live result tensor, whose sources are the op's operands.
        let dst = unsafe { &*dst };
        // SAFETY: `user` is the `ViewPairs` of caches that `store_rows` kept in the op's
        // context.
        let caches = unsafe { &*(user as *const ViewPairs) };
        // SAFETY: sources 0 and 1 are the K and V rows, live for the graph's computation.
        let (k, v) = unsafe { (&*dst.src[0], &*dst.src[1]) };
        let (ith, nth) = (ith.max(0) as usize, nth.max(1) as usize);
        if ith == 0 {
            // SAFETY: the result is one f32, allocated for the graph (a placeholder, written
            // so that it holds no garbage).
            unsafe { *(dst.data as *mut f32) = 0.0 };
        }
        for i in (ith..caches.len()).step_by(nth) {
            // SAFETY: source 2 + i is sequence i's one-value I64 index; pair i its cache
            // views, kept with the op's (live, computing) context.
            let (idx, (kc, vc)) = unsafe { (&*dst.src[2 + i], caches.get(i)) };
            // SAFETY: as above.
            let cell = unsafe { *(idx.data as *const i64) };
            if !(0..kc.ne[1]).contains(&cell) || !(0..vc.ne[1]).contains(&cell) {
                // ggml's set_rows asserts the same (an index is ours: positions modulo cells)
                eprintln!("ember: store_rows: cell {cell} outside the cache");
                std::process::abort();
            }
            let cell = cell as usize;
            for (rows, cache) in [(k, kc), (v, vc)] {
                let n = (rows.ne[0] * rows.ne[1]) as usize;
                let from = (rows.data as *const u8).wrapping_add(i * rows.nb[2]) as *const f32;
                let to = (cache.data as *mut u8).wrapping_add(cell * cache.nb[1]) as *mut u16;
                // SAFETY: row i of the rows holds `n` f32 (contiguous, `takes`); cell `cell`
                // (checked above) of the cache holds `n` f16; `n` is a multiple of 8; this CPU
                // has F16C (`attn::available`).
                unsafe { to_f16(from, to, n) };
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (dst, ith, nth, user);
}

/// `n` (a multiple of 8) f32 values at `from` to f16 at `to`, rounded to nearest even.
///
/// # Safety
/// Both ranges valid; the CPU has F16C and AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
unsafe fn to_f16(from: *const f32, to: *mut u16, n: usize) {
    use std::arch::x86_64::*;
    for j in (0..n).step_by(8) {
        // SAFETY: values j..j + 8 lie in both ranges (the caller's promise).
        unsafe {
            let x = _mm256_loadu_ps(from.add(j));
            _mm_storeu_si128(
                to.add(j) as *mut __m128i,
                _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{takes, SeqStore, SEQS_PER_OP};
    use crate::ggml::kernels::tests::Rng;
    use crate::ggml::{Backend, BufferType, Context, Type};

    /// The op writes what ggml's `set_rows` writes, byte for byte, for more sequences than one
    /// op takes, rows of a fused projection's view, and thread counts.
    #[test]
    #[cfg_attr(
        not(ggml_attn),
        ignore = "needs AVX2, FMA, F16C and a GCC-built ggml whose f16 vectors hold f32 lanes"
    )]
    fn the_store_op_writes_what_set_rows_writes() {
        let (hd, nkv, cells, n_seq) = (64i64, 3i64, 40i64, 11usize);
        let w = hd * nkv;
        for threads in [1, 2, 3] {
            let mut rng = Rng(threads as u64);
            let data = Context::new(4 + 5 * n_seq, 0).unwrap();
            // K and V as views into one fused projection [q | k | v] per token
            let fused = data.new_tensor(Type::F32, &[4 * w, n_seq as i64]);
            let caches: Vec<_> = (0..n_seq)
                .map(|_| [0, 1, 2, 3].map(|_| data.new_tensor(Type::F16, &[w, cells])))
                .collect();
            let idx: Vec<_> = (0..n_seq)
                .map(|_| data.new_tensor(Type::I64, &[1]))
                .collect();
            data.alloc_tensors(BufferType::cpu(), false).unwrap();
            // values of every size, some exactly halfway between two f16 numbers
            let vals: Vec<f32> = (0..4 * w * n_seq as i64)
                .map(|j| match j % 5 {
                    0 => rng.float() * 1e5,
                    1 => 1.0 + (2 * (j % 1024) + 1) as f32 / 2048.0,
                    _ => rng.float(),
                })
                .collect();
            fused.write_f32(&vals).unwrap();
            for (i, (c, x)) in caches.iter().zip(&idx).enumerate() {
                x.write_i64(&[((i * 7) % cells as usize) as i64]).unwrap();
                let junk: Vec<u8> = (0..2 * w * cells).map(|b| b as u8).collect();
                for t in c {
                    t.write_bytes(0, &junk).unwrap();
                }
            }
            let ctx = Context::new(64 * n_seq + 64, 256).unwrap();
            let mut g = ctx.new_graph(256);
            let row = fused.nb()[1];
            let part = |off: i64, first: usize, n: usize| {
                ctx.view(
                    fused,
                    &[hd, nkv, n as i64],
                    &[4 * hd as usize, row],
                    off as usize * 4 + first * row,
                )
            };
            for (i, (c, x)) in caches.iter().zip(&idx).enumerate() {
                let k = ctx.view(part(w, i, 1), &[w, 1], &[row], 0);
                let v = ctx.view(part(2 * w, i, 1), &[w, 1], &[row], 0);
                g.expand(ctx.set_rows(c[0], k, *x));
                g.expand(ctx.set_rows(c[1], v, *x));
            }
            let whole = |t| ctx.view(t, &[w, cells], &[Type::F16.row_size(w)], 0);
            for (j, chunk) in caches.chunks(SEQS_PER_OP).enumerate() {
                let first = j * SEQS_PER_OP;
                let seqs: Vec<SeqStore<'_>> = chunk
                    .iter()
                    .zip(&idx[first..])
                    .map(|(c, &x)| SeqStore {
                        k_cache: whole(c[2]),
                        v_cache: whole(c[3]),
                        idx: x,
                    })
                    .collect();
                let (k, v) = (part(w, first, chunk.len()), part(2 * w, first, chunk.len()));
                assert!(takes(k, v, &seqs), "the op takes the case");
                g.expand(ctx.store_rows(k, v, &seqs));
            }
            ctx.alloc_tensors(BufferType::cpu(), false).unwrap();
            Backend::cpu(threads).unwrap().compute(&g).unwrap();
            let bytes = |t: crate::ggml::Tensor<'_>| {
                let mut b = vec![0u8; 2 * (w * cells) as usize];
                t.read_bytes(0, &mut b).unwrap();
                b
            };
            for (i, c) in caches.iter().enumerate() {
                assert!(
                    bytes(c[0]) == bytes(c[2]),
                    "K of sequence {i}, {threads} threads"
                );
                assert!(
                    bytes(c[1]) == bytes(c[3]),
                    "V of sequence {i}, {threads} threads"
                );
            }
        }
    }
}
