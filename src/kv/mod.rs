//! The KV cache: one K and one V tensor per layer, each with its own type.
//!
//! K rows are `[n_embd_k_gqa]` per cell. V is stored the same way when attention runs through
//! ggml's flash-attention op; otherwise V is stored transposed (one row per channel, cells
//! along the row) so that `softmax(KQ) · V` is a plain matrix product, as in llama.cpp.
//! Bookkeeping (which cells hold which positions) lives in [`cells`], free of ggml.

pub mod cells;

pub use cells::{Cells, ContextFull, KV_PAD};

use crate::ggml::{BufferType, Context, GgmlError, TensorHandle, Type};

/// Sizes of the cache as allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvBytes {
    pub k: u64,
    pub v: u64,
}

pub struct KvCache {
    ctx: Context,
    k: Vec<TensorHandle>,
    v: Vec<TensorHandle>,
    pub type_k: Type,
    pub type_v: Type,
    /// V stored transposed (no flash attention).
    pub v_trans: bool,
    pub cells: Cells,
    bytes: KvBytes,
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
}

impl KvCache {
    pub fn new(
        shape: &KvShape,
        size: u32,
        type_k: Type,
        type_v: Type,
        v_trans: bool,
    ) -> Result<KvCache, KvError> {
        for (which, ty, head) in [
            ("K", type_k, shape.head_dim_k),
            ("V", type_v, shape.head_dim_v),
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
        let ctx = Context::new(2 * shape.n_layer as usize, 0)?;
        let (ek, ev) = (
            (shape.head_dim_k * shape.n_head_kv) as i64,
            (shape.head_dim_v * shape.n_head_kv) as i64,
        );
        let mut k = Vec::new();
        let mut v = Vec::new();
        for il in 0..shape.n_layer {
            let kt = ctx
                .new_tensor(type_k, &[ek, size as i64])
                .set_name(&format!("cache_k_l{il}"));
            let vt = ctx
                .new_tensor(type_v, &[ev, size as i64])
                .set_name(&format!("cache_v_l{il}"));
            k.push(ctx.handle(kt));
            v.push(ctx.handle(vt));
        }
        let bytes = KvBytes {
            k: k.iter().map(|&h| ctx.get(h).nbytes() as u64).sum(),
            v: v.iter().map(|&h| ctx.get(h).nbytes() as u64).sum(),
        };
        ctx.alloc_tensors(BufferType::cpu(), false)?;
        // Stale cells are masked out, but NaN bit patterns times a zero weight would still
        // poison a matrix product: start from zeros as llama.cpp does.
        ctx.clear_buffers(0);
        Ok(KvCache {
            ctx,
            k,
            v,
            type_k,
            type_v,
            v_trans,
            cells: Cells::new(size),
            bytes,
        })
    }

    pub fn ctx(&self) -> &Context {
        &self.ctx
    }

    pub fn k(&self, il: usize) -> TensorHandle {
        self.k[il]
    }

    pub fn v(&self, il: usize) -> TensorHandle {
        self.v[il]
    }

    pub fn size(&self) -> u32 {
        self.cells.size()
    }

    /// Bytes of K and V as allocated (all layers).
    pub fn bytes(&self) -> KvBytes {
        self.bytes
    }
}
