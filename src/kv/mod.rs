//! The KV cache: one K and one V tensor per layer, each with its own type.
//!
//! K rows are `[n_embd_k_gqa]` per cell. V is stored the same way when attention runs through
//! ggml's flash-attention op; otherwise V is stored transposed (one row per channel, cells
//! along the row) so that `softmax(KQ) · V` is a plain matrix product, as in llama.cpp.
//! Bookkeeping (which cells hold which positions) lives in [`cells`], free of ggml.
//!
//! The sliding-window ("local") layers of a model like Gemma 3 may hold fewer cells than the
//! context, as a ring (see [`cells`]): at `-c 4096` Gemma 3's 15 local layers keep 1,024 cells
//! each instead of 4,096, as llama.cpp's SWA cache does.

pub mod cells;
pub mod recurrent;

pub use cells::{ring_cells, Cells, ContextFull, KV_PAD};
pub use recurrent::{Recurrent, RecurrentShape, States};

use crate::ggml::{BufferType, Context, GgmlError, TensorHandle, Type};

/// Sizes of the cache as allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvBytes {
    pub k: u64,
    pub v: u64,
}

/// The two kinds of attention layer: over every cell of the cache, or over a sliding window
/// (the "local" layers, whose cells may be a ring smaller than the cache).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttnKind {
    Full,
    Local,
}

/// One sequence's memory: per layer either attention K and V rows (one per cell), or, in the
/// recurrent layers of a hybrid model, a fixed-size state ([`recurrent`]). Both answer the same
/// requests: take a micro-batch (`cells.append`), roll back ([`KvCache::truncate`]), be saved
/// and restored (`generate::state`), lend a prefix to another sequence.
pub struct KvCache {
    ctx: Context,
    /// per layer (None: a recurrent layer)
    k: Vec<Option<TensorHandle>>,
    v: Vec<Option<TensorHandle>>,
    /// The recurrent layers' states, in a hybrid model.
    rs: Option<Recurrent>,
    pub type_k: Type,
    pub type_v: Type,
    /// V stored transposed (no flash attention).
    pub v_trans: bool,
    pub cells: Cells,
    /// Which layers are sliding-window layers (their cells are the ring).
    shape: KvShape,
    bytes: KvBytes,
    /// Walsh-Hadamard rotations applied to Q/K (and to V and back on the output) before a
    /// quantized cache stores them, as llama.cpp does: they spread outliers across a block so
    /// that quantization loses less. `None` for float types or head sizes not a multiple of 64.
    k_rot: Option<TensorHandle>,
    v_rot: Option<TensorHandle>,
}

#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error(
        "{which} cache type {ty}: its block of {block} values does not divide the head size {head}"
    )]
    BlockSize {
        which: &'static str,
        ty: Type,
        block: i64,
        head: u32,
    },
    #[error(transparent)]
    Ggml(#[from] GgmlError),
}

/// Per-layer K/V widths of a model.
#[derive(Clone, Debug)]
pub struct KvShape {
    pub n_layer: u32,
    pub head_dim_k: u32,
    pub head_dim_v: u32,
    pub n_head_kv: u32,
    /// The sliding window and which layers use it, for models with local layers.
    pub swa: Option<(u32, Vec<bool>)>,
    /// The recurrent layers of a hybrid model (they keep a state instead of K and V).
    pub recurrent: Option<RecurrentShape>,
}

impl KvShape {
    /// Checks that both cache types can hold this model's heads: a block-quantized type needs
    /// a head size its block divides.
    pub fn check(&self, type_k: Type, type_v: Type) -> Result<(), KvError> {
        for (which, ty, head) in [
            ("K", type_k, self.head_dim_k),
            ("V", type_v, self.head_dim_v),
        ] {
            let block = ty.block_size();
            if block <= 0 || head as i64 % block != 0 {
                return Err(KvError::BlockSize {
                    which,
                    ty,
                    block,
                    head,
                });
            }
        }
        Ok(())
    }

    /// Whether layer `il` keeps K and V (is not recurrent).
    pub fn has_kv(&self, il: u32) -> bool {
        !self.recurrent.as_ref().is_some_and(|r| r.is_recurrent(il))
    }

    /// Whether layer `il` is a sliding-window layer.
    pub fn is_swa(&self, il: u32) -> bool {
        self.swa
            .as_ref()
            .is_some_and(|(_, l)| l.get(il as usize).copied().unwrap_or(false))
    }

    /// The sliding window, when some layer uses it.
    pub fn window(&self) -> Option<u32> {
        self.swa
            .as_ref()
            .filter(|_| self.n_swa_layers() > 0)
            .map(|&(w, _)| w)
    }

    /// Number of sliding-window layers.
    pub fn n_swa_layers(&self) -> u32 {
        (0..self.n_layer).filter(|&il| self.is_swa(il)).count() as u32
    }

    /// Cells of layer `il` in a cache of `size` cells whose local layers hold `ring`.
    pub fn layer_cells(&self, il: u32, size: u32, ring: u32) -> u32 {
        if self.is_swa(il) {
            ring.min(size)
        } else {
            size
        }
    }

    /// The ring the local layers get for a context of `n_ctx` cells and micro-batches of
    /// `n_ubatch` tokens: the window plus a micro-batch (see [`ring_cells`]), or the whole
    /// context with `full` (llama.cpp's `--swa-full`) or without a window.
    pub fn ring(&self, n_ctx: u32, n_ubatch: u32, full: bool) -> u32 {
        match self.window() {
            Some(window) if !full => ring_cells(n_ctx, window, n_ubatch.max(1)),
            _ => n_ctx,
        }
    }

    /// Bytes a cache of `size` cells (`ring` in the local layers) takes with these types, K
    /// and V separately: per layer one `[n_head_kv·head_dim, cells]` tensor each, rows stored
    /// in ggml blocks (q8_0: 34 bytes per 32 values, q4_0: 18 per 32). [`KvCache::new`]
    /// allocates exactly this.
    pub fn bytes(&self, size: u32, ring: u32, type_k: Type, type_v: Type) -> KvBytes {
        let cells: u64 = (0..self.n_layer)
            .filter(|&il| self.has_kv(il))
            .map(|il| self.layer_cells(il, size, ring) as u64)
            .sum();
        let row = |ty: Type, head: u32| ty.row_size((head * self.n_head_kv) as i64) as u64;
        KvBytes {
            k: cells * row(type_k, self.head_dim_k),
            v: cells * row(type_v, self.head_dim_v),
        }
    }
}

impl KvCache {
    pub fn new(
        shape: &KvShape,
        size: u32,
        type_k: Type,
        type_v: Type,
        v_trans: bool,
    ) -> Result<KvCache, KvError> {
        Self::placed(shape, (size, size), type_k, type_v, v_trans, &[], 1)
    }

    /// A cache of `cells.0` cells (`cells.1` in the local layers) whose layer `il` lives in
    /// device memory `devices[il]` where that is given (the layers offloaded with `-ngl` or
    /// `--rpc`; the rotation matrices go with the last layer), in host memory otherwise. The
    /// recurrent layers' states (always in host memory) keep `snapshots` slots.
    #[allow(clippy::too_many_arguments)]
    pub fn placed(
        shape: &KvShape,
        cells: (u32, u32),
        type_k: Type,
        type_v: Type,
        v_trans: bool,
        devices: &[Option<BufferType>],
        snapshots: u32,
    ) -> Result<KvCache, KvError> {
        shape.check(type_k, type_v)?;
        let (size, ring) = (cells.0, cells.1.min(cells.0));
        let ctx = Context::new(4 * shape.n_layer as usize + 2, 0)?;
        let (ek, ev) = (
            (shape.head_dim_k * shape.n_head_kv) as i64,
            (shape.head_dim_v * shape.n_head_kv) as i64,
        );
        let mut k = Vec::new();
        let mut v = Vec::new();
        for il in 0..shape.n_layer {
            if !shape.has_kv(il) {
                k.push(None);
                v.push(None);
                continue;
            }
            let n = shape.layer_cells(il, size, ring) as i64;
            let kt = ctx
                .new_tensor(type_k, &[ek, n])
                .set_name(&format!("cache_k_l{il}"));
            let vt = ctx
                .new_tensor(type_v, &[ev, n])
                .set_name(&format!("cache_v_l{il}"));
            k.push(Some(ctx.handle(kt)));
            v.push(Some(ctx.handle(vt)));
        }
        let rs = shape
            .recurrent
            .as_ref()
            .map(|r| Recurrent::new(&ctx, r, snapshots));
        let bytes = KvBytes {
            k: k.iter()
                .flatten()
                .map(|&h| ctx.get(h).nbytes() as u64)
                .sum(),
            v: v.iter()
                .flatten()
                .map(|&h| ctx.get(h).nbytes() as u64)
                .sum(),
        };
        let rot = |n: Option<u32>, name: &str| {
            n.map(|n| {
                let t = ctx
                    .new_tensor(Type::F32, &[n as i64, n as i64])
                    .set_name(name);
                ctx.handle(t)
            })
        };
        let k_rot = rot(rotation_size(type_k, shape.head_dim_k, true), "attn_k_rot");
        let v_rot = rot(rotation_size(type_v, shape.head_dim_v, false), "attn_v_rot");
        let device = |il: usize| devices.get(il).copied().flatten();
        let last = (shape.n_layer as usize).checked_sub(1);
        let mut groups: Vec<(BufferType, Vec<TensorHandle>)> = Vec::new();
        for il in 0..shape.n_layer as usize {
            let Some(buft) = device(il) else { continue };
            let mut hs: Vec<TensorHandle> = [k[il], v[il]].into_iter().flatten().collect();
            if Some(il) == last {
                hs.extend([k_rot, v_rot].into_iter().flatten());
            }
            match groups.iter_mut().find(|(b, _)| *b == buft) {
                Some((_, g)) => g.extend(hs),
                None => groups.push((buft, hs)),
            }
        }
        for (buft, hs) in groups {
            ctx.alloc_tensors_in(buft, &hs, false)?;
        }
        ctx.alloc_tensors(BufferType::cpu(), false)?;
        // Stale cells are masked out, but NaN bit patterns times a zero weight would still
        // poison a matrix product: start from zeros as llama.cpp does.
        ctx.clear_buffers(0);
        for h in [k_rot, v_rot].into_iter().flatten() {
            let t = ctx.get(h);
            t.write_f32(&hadamard(t.ne()[0] as usize))?;
        }
        Ok(KvCache {
            ctx,
            k,
            v,
            rs,
            type_k,
            type_v,
            v_trans,
            cells: match shape.window() {
                Some(window) => Cells::with_window(size, window, ring),
                None => Cells::new(size),
            },
            shape: shape.clone(),
            bytes,
            k_rot,
            v_rot,
        })
    }

    pub fn ctx(&self) -> &Context {
        &self.ctx
    }

    /// Layer `il`'s K rows.
    ///
    /// # Panics
    /// If layer `il` is recurrent (it has none).
    pub fn k(&self, il: usize) -> TensorHandle {
        self.k[il].expect("an attention layer")
    }

    /// Layer `il`'s V rows (see [`k`](Self::k)).
    pub fn v(&self, il: usize) -> TensorHandle {
        self.v[il].expect("an attention layer")
    }

    /// Whether layer `il` keeps K and V (is not recurrent).
    pub fn has_kv(&self, il: usize) -> bool {
        self.shape.has_kv(il as u32)
    }

    /// The first layer that keeps K and V.
    pub fn first_kv_layer(&self) -> usize {
        self.k.iter().position(|k| k.is_some()).unwrap_or(0)
    }

    /// The recurrent layers' states, in a hybrid model.
    pub fn recurrent(&self) -> Option<&Recurrent> {
        self.rs.as_ref()
    }

    /// Forget positions from `n` on; returns the positions kept: fewer than `n` when the
    /// sliding-window ring no longer holds the window before `n` (then zero), or when no
    /// recurrent state can be restored at `n` (then the latest checkpoint's position, or
    /// zero). The caller evaluates the rest again.
    pub fn truncate(&mut self, n: u32) -> u32 {
        let mut kept = self.cells.truncate(n);
        if let Some(rs) = &mut self.rs {
            let r = rs.restorable(kept);
            if r < kept {
                kept = self.cells.truncate(r);
            }
            rs.forget_after(kept);
        }
        kept
    }

    /// Forget every position (and every recurrent checkpoint).
    pub fn clear(&mut self) {
        self.cells.clear();
        if let Some(rs) = &mut self.rs {
            rs.forget_after(0);
        }
    }

    /// Bring the recurrent states to the cells' position (after a truncate or a clear),
    /// before a micro-batch is evaluated.
    pub fn sync_recurrent(&mut self) -> Result<(), GgmlError> {
        let used = self.cells.used();
        match &mut self.rs {
            Some(rs) if rs.pos() != used => rs.restore(&self.ctx, used),
            _ => Ok(()),
        }
    }

    /// A micro-batch of `n` tokens was evaluated (the recurrent states advanced with it).
    pub fn advanced(&mut self, n: u32) {
        let used = self.cells.used();
        if let Some(rs) = &mut self.rs {
            rs.advanced(used, n);
        }
    }

    /// Keep a checkpoint of the recurrent states at the current position (nothing without
    /// recurrent layers).
    pub fn checkpoint(&mut self) -> Result<(), GgmlError> {
        match &mut self.rs {
            Some(rs) => rs.checkpoint(&self.ctx),
            None => Ok(()),
        }
    }

    /// The recurrent states at position `n` (see [`Recurrent::states_at`]): `None` when they
    /// are no longer held.
    pub fn states_at(&self, n: u32) -> Result<Option<States>, GgmlError> {
        match &self.rs {
            Some(rs) => rs.states_at(&self.ctx, n),
            None => Ok(Some(States::default())),
        }
    }

    /// Write recurrent states (from [`states_at`](Self::states_at)) as the states at `n`.
    pub fn put_states(&mut self, n: u32, count: u32, bytes: &[Vec<u8>]) -> Result<(), GgmlError> {
        match &mut self.rs {
            Some(rs) => rs.put_states(&self.ctx, n, count, bytes),
            None => Ok(()),
        }
    }

    pub fn size(&self) -> u32 {
        self.cells.size()
    }

    /// Whether layer `il` is a sliding-window layer.
    pub fn is_swa(&self, il: usize) -> bool {
        self.shape.is_swa(il as u32)
    }

    /// Cells of layer `il`: the ring for local layers, else the size.
    pub fn layer_cells(&self, il: usize) -> u32 {
        self.shape
            .layer_cells(il as u32, self.cells.size(), self.cells.ring())
    }

    /// Which kind of attention layer `il` runs.
    pub fn kind(&self, il: usize) -> AttnKind {
        if self.is_swa(il) {
            AttnKind::Local
        } else {
            AttnKind::Full
        }
    }

    /// Whether some layer runs attention of kind `kind` (a model may have only one kind).
    pub fn has_kind(&self, kind: AttnKind) -> bool {
        (0..self.k.len()).any(|il| self.has_kv(il) && self.kind(il) == kind)
    }

    /// Cells of the layers of kind `kind`: the whole cache, or the local layers' ring.
    pub fn kind_cells(&self, kind: AttnKind) -> u32 {
        match kind {
            AttnKind::Full => self.cells.size(),
            AttnKind::Local => self.cells.ring(),
        }
    }

    /// How many positions back a token sees in the layers of kind `kind` (itself included):
    /// the sliding window, or every position.
    pub fn kind_window(&self, kind: AttnKind) -> u32 {
        match kind {
            AttnKind::Full => u32::MAX,
            AttnKind::Local => self.cells.window().unwrap_or(u32::MAX),
        }
    }

    /// The rotation applied to Q and K before K is stored, if any.
    pub fn k_rot(&self) -> Option<TensorHandle> {
        self.k_rot
    }

    /// The rotation applied to V before it is stored and to the attention output after.
    pub fn v_rot(&self) -> Option<TensorHandle> {
        self.v_rot
    }

    /// Side of the K rotation matrix, if K is rotated.
    pub fn k_rot_size(&self) -> Option<u32> {
        self.k_rot.map(|h| self.ctx.get(h).ne()[0] as u32)
    }

    /// Side of the V rotation matrix, if V is rotated.
    pub fn v_rot_size(&self) -> Option<u32> {
        self.v_rot.map(|h| self.ctx.get(h).ne()[0] as u32)
    }

    /// Bytes of K and V as allocated (all layers).
    pub fn bytes(&self) -> KvBytes {
        self.bytes
    }
}

/// What `ring` cells of the sliding-window layers are, in a context of `n_ctx`, for reports
/// (`ember info`, `-v`): empty when they hold the whole context.
pub fn ring_note(ring: u32, n_ctx: u32) -> &'static str {
    if ring < n_ctx {
        " (the window plus a micro-batch, as a ring; --swa-full keeps all)"
    } else {
        ""
    }
}

/// Side of the Walsh-Hadamard rotation for a cache of type `ty` and head size `head`, as
/// llama.cpp chooses it: only quantized types and heads a multiple of 64; K takes the largest
/// power of two dividing the head (from 64 up), V always 64. `EMBER_ATTN_ROT_DISABLE=1` turns
/// rotations off (llama.cpp's `LLAMA_ATTN_ROT_DISABLE`), for experiments.
pub fn rotation_size(ty: Type, head: u32, is_k: bool) -> Option<u32> {
    if !crate::switches::Switches::get().attn_rot
        || !ty.is_quantized()
        || head == 0
        || !head.is_multiple_of(64)
    {
        return None;
    }
    let mut n = 64;
    while is_k && head.is_multiple_of(2 * n) {
        n *= 2;
    }
    Some(n)
}

/// The orthonormal Walsh-Hadamard matrix of side `n` (a power of two), row-major, built by
/// Sylvester's doubling; it is symmetric and its own inverse.
pub fn hadamard(n: usize) -> Vec<f32> {
    debug_assert!(n.is_power_of_two());
    let mut m = vec![0f32; n * n];
    m[0] = (1.0 / (n as f32).sqrt() as f64) as f32;
    let mut s = 1;
    while s < n {
        for i in 0..s {
            for j in 0..s {
                let v = m[i * n + j];
                m[(i + s) * n + j] = v;
                m[i * n + j + s] = v;
                m[(i + s) * n + j + s] = -v;
            }
        }
        s *= 2;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hadamard_is_orthonormal_and_its_own_inverse() {
        for n in [64usize, 128, 256] {
            let h = hadamard(n);
            for i in 0..n {
                for j in 0..n {
                    let dot: f64 = (0..n).map(|k| (h[i * n + k] * h[k * n + j]) as f64).sum();
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((dot - want).abs() < 1e-5, "n={n} ({i},{j}) = {dot}");
                }
            }
        }
    }

    #[test]
    fn rotation_sizes_follow_llama_cpp() {
        assert_eq!(rotation_size(Type::F16, 64, true), None);
        assert_eq!(rotation_size(Type::Q8_0, 64, true), Some(64));
        assert_eq!(rotation_size(Type::Q8_0, 128, true), Some(128));
        assert_eq!(rotation_size(Type::Q4_0, 256, true), Some(256));
        assert_eq!(rotation_size(Type::Q4_0, 256, false), Some(64));
        assert_eq!(rotation_size(Type::Q4_0, 96, true), None);
        assert_eq!(rotation_size(Type::Q8_0, 32, false), None);
    }
}
