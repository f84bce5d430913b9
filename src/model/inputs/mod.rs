//! The inputs of a forward graph. Each is one type that makes its tensor(s) when a graph is
//! built (`new`), writes them from the micro-batch once the graph is allocated
//! ([`GraphInput::set`]), and says whether a built graph fits another micro-batch
//! ([`GraphInput::can_reuse`]), as llama.cpp's `llm_graph_input_*` types do. Adding an input
//! (or, later, a second sequence to the micro-batch) is a change to this file only.
//!
//! The attention inputs come once per sequence of the micro-batch and per kind of attention
//! layer ([`AttnKind`]): the layers that attend to the whole cache and the sliding-window
//! ("local") ones each have a mask and the cache rows their K and V go to, made only when some
//! layer is of that kind. A micro-batch holds one or more sequences, each a run of consecutive
//! tokens with its own cache (see `generate::session`).

use std::ops::Range;

use crate::ggml::{Context, GgmlError, Tensor, TensorHandle, Type};
use crate::kv::{AttnKind, Cells, KvCache};

use super::hparams::AttnTemperature;

/// One micro-batch, as the inputs see it: the tokens of one or more sequences, each sequence's
/// a run of consecutive rows.
pub struct UBatch<'a> {
    /// The token ids.
    pub tokens: &'a [u32],
    /// The position of each token (in its own sequence).
    pub pos: &'a [i32],
    /// Rows of the batch whose logits are wanted, ascending.
    pub out_rows: &'a [i32],
}

/// One sequence's part of a micro-batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqShape {
    /// Which of the session's sequence caches it attends to.
    pub slot: usize,
    /// Its tokens (consecutive rows of the batch, after the previous sequences').
    pub n_tokens: usize,
    /// Cache cells its full-attention layers attend to (the local layers: at most their ring).
    pub n_kv: u32,
}

/// What a forward graph's tensors depend on, besides the model and the caches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphShape {
    pub n_tokens: usize,
    /// Rows with logits.
    pub n_outputs: usize,
    /// The sequences, in row order (one for a single sequence's micro-batch).
    pub seqs: Vec<SeqShape>,
    /// With several sequences: every product computes each column as a one-column product
    /// (each sequence's results as alone); else by the fastest kernels for the column count.
    pub invariant: bool,
    /// A verification step of speculative decoding: attention row by row, each row as
    /// decoding its token alone computes it (see `Builder::rows_alone`).
    pub columns: bool,
}

impl GraphShape {
    /// The shape of the graph for `ub`, all of one sequence (cache `slot`), its tokens already
    /// appended to `cells`.
    pub fn of(ub: &UBatch<'_>, slot: usize, cells: &Cells) -> GraphShape {
        GraphShape::single(ub.tokens.len(), cells.n_kv(), ub.out_rows.len(), slot)
    }

    /// One sequence (cache `slot`): `n_tokens` tokens attending to `n_kv` cells.
    pub fn single(n_tokens: usize, n_kv: u32, n_outputs: usize, slot: usize) -> GraphShape {
        GraphShape {
            n_tokens,
            n_outputs,
            seqs: vec![SeqShape {
                slot,
                n_tokens,
                n_kv,
            }],
            invariant: true,
            columns: false,
        }
    }

    /// The rows of sequence `i`.
    pub fn span(&self, i: usize) -> Range<usize> {
        let start: usize = self.seqs[..i].iter().map(|s| s.n_tokens).sum();
        start..start + self.seqs[i].n_tokens
    }
}

/// Host-side buffers the inputs are written through. One set lives as long as the session and
/// serves every micro-batch: the masks of a long prompt are megabytes, and allocating them
/// afresh each time (in sizes that change turn after turn in a chat) fragments the heap.
#[derive(Default)]
pub struct Scratch {
    i32: Vec<i32>,
    i64: Vec<i64>,
    f32: Vec<f32>,
    f16: Vec<u16>,
}

/// What a graph input does once its tensors exist.
pub trait GraphInput {
    /// Write the values of micro-batch `ub` into this input's tensors (of context `ctx`, the
    /// graph allocated).
    fn set(&self, ctx: &Context, ub: &UBatch<'_>, scratch: &mut Scratch) -> Result<(), GgmlError>;

    /// Whether this input's tensors, as built, fit a micro-batch of shape `shape`: when every
    /// input's do, the graph is re-used with only its inputs written again.
    fn can_reuse(&self, shape: &GraphShape) -> bool;
}

/// Every input of one forward graph.
pub struct Inputs {
    pub tokens: TokenIds,
    pub pos: Positions,
    /// Each sequence's attention inputs, in row order.
    pub seqs: Vec<SeqInputs>,
    pub out_ids: OutputRows,
    /// Each token's attention temperature, made when the graph asks for it
    /// ([`Inputs::attn_temp`]).
    attn_temp: Option<AttnTemp>,
    /// The cache slot of each sequence, as built.
    slots: Vec<usize>,
    /// Built for column-invariant products.
    invariant: bool,
    /// Built for a verification step (attention row by row).
    columns: bool,
}

/// One sequence's attention inputs.
pub struct SeqInputs {
    /// The full-attention layers' inputs, when some layer attends to the whole cache.
    pub full: Option<KvInputs>,
    /// The sliding-window layers' inputs, when some layer is local.
    pub local: Option<KvInputs>,
}

impl SeqInputs {
    /// The inputs of the attention layers of kind `kind`.
    ///
    /// # Panics
    /// If no layer is of that kind (then the graph has no such layer to ask).
    pub fn attn(&self, kind: AttnKind) -> &KvInputs {
        match kind {
            AttnKind::Full => self.full.as_ref(),
            AttnKind::Local => self.local.as_ref(),
        }
        .expect("attention inputs exist for every kind of layer the cache has")
    }
}

impl Inputs {
    /// The inputs of a graph of shape `shape`, sequence `i` over cache `kvs[i]` (every cache
    /// of one geometry), values `n_embd_v` wide per cell. Tensors are made in the order graphs
    /// have always had them: tokens, positions, the masks, the cache rows, the output rows.
    pub fn new(ctx: &Context, kvs: &[&KvCache], shape: &GraphShape, n_embd_v: u32) -> Inputs {
        assert_eq!(kvs.len(), shape.seqs.len(), "one cache per sequence");
        let tokens = TokenIds::new(ctx, shape);
        let pos = Positions::new(ctx, shape);
        let at = |i: usize| Seq {
            index: i,
            of: shape.seqs.len(),
            span: shape.span(i),
            n_kv: shape.seqs[i].n_kv,
        };
        let kinds = [AttnKind::Full, AttnKind::Local].map(|k| kvs[0].has_kind(k).then_some(k));
        let masks: Vec<[Option<KqMask>; 2]> = (0..kvs.len())
            .map(|i| kinds.map(|k| k.map(|k| KqMask::new(ctx, kvs[i], k, at(i)))))
            .collect();
        let seqs = masks
            .into_iter()
            .enumerate()
            .map(|(i, [full_mask, local_mask])| {
                let kv = kvs[i];
                let full_rows = kinds[0].map(|k| CacheRows::new(ctx, kv, k, at(i), n_embd_v));
                let local_rows = kinds[1].map(|k| match &full_rows {
                    // Without a ring the local layers' cells are the full layers' cells.
                    Some(r) if kv.kind_cells(k) == r.cells => r.shared(),
                    _ => CacheRows::new(ctx, kv, k, at(i), n_embd_v),
                });
                let kv_inputs = |mask: Option<KqMask>, rows: Option<CacheRows>| {
                    mask.zip(rows).map(|(mask, rows)| KvInputs { mask, rows })
                };
                SeqInputs {
                    full: kv_inputs(full_mask, full_rows),
                    local: kv_inputs(local_mask, local_rows),
                }
            })
            .collect();
        Inputs {
            tokens,
            pos,
            seqs,
            out_ids: OutputRows::new(ctx, shape),
            attn_temp: None,
            slots: shape.seqs.iter().map(|s| s.slot).collect(),
            invariant: shape.invariant,
            columns: shape.columns,
        }
    }

    /// Positions for multi-section RoPE (four per token) instead of one per token.
    pub fn use_pos_sections(&mut self, ctx: &Context) {
        self.pos = Positions::make(ctx, self.pos.n_tokens, true);
    }

    /// The inputs of the attention layers of kind `kind` of the first (or only) sequence.
    ///
    /// # Panics
    /// If no layer is of that kind (then the graph has no such layer to ask).
    pub fn attn(&self, kind: AttnKind) -> &KvInputs {
        self.seqs[0].attn(kind)
    }

    /// The attention temperature of each token (`t`: the model's), made on the first call.
    pub fn attn_temp<'g>(&mut self, ctx: &'g Context, t: AttnTemperature) -> Tensor<'g> {
        let n_tokens = self.tokens.n_tokens;
        let a = self
            .attn_temp
            .get_or_insert_with(|| AttnTemp::new(ctx, n_tokens, t));
        ctx.get(a.tensor)
    }

    fn all(&self) -> impl Iterator<Item = &dyn GraphInput> {
        let kv = self
            .seqs
            .iter()
            .flat_map(|s| [&s.full, &s.local].into_iter().flatten());
        [&self.tokens as &dyn GraphInput, &self.pos]
            .into_iter()
            .chain(kv.flat_map(|a| [&a.mask as &dyn GraphInput, &a.rows]))
            .chain([&self.out_ids as &dyn GraphInput])
            .chain(self.attn_temp.iter().map(|a| a as &dyn GraphInput))
    }

    /// Write micro-batch `ub` into every input (the graph allocated in `ctx`).
    pub fn set(
        &self,
        ctx: &Context,
        ub: &UBatch<'_>,
        scratch: &mut Scratch,
    ) -> Result<(), GgmlError> {
        self.all().try_for_each(|i| i.set(ctx, ub, scratch))
    }

    /// Whether the graph these inputs belong to fits a micro-batch of shape `shape`: the same
    /// sequences' caches, in the same order, and every input's tensors fit.
    pub fn can_reuse(&self, shape: &GraphShape) -> bool {
        self.invariant == shape.invariant
            && self.columns == shape.columns
            && self.slots.len() == shape.seqs.len()
            && self
                .slots
                .iter()
                .zip(&shape.seqs)
                .all(|(&a, b)| a == b.slot)
            && self.all().all(|i| i.can_reuse(shape))
    }
}

/// Where one sequence's inputs sit in a micro-batch.
#[derive(Clone)]
struct Seq {
    /// Its place among the batch's sequences.
    index: usize,
    /// How many sequences the batch has (names get a suffix when more than one).
    of: usize,
    /// Its rows.
    span: Range<usize>,
    n_kv: u32,
}

impl Seq {
    /// A tensor name for this sequence's input: `base` alone in a one-sequence batch.
    fn name(&self, base: &str, kind: AttnKind) -> String {
        if self.of == 1 {
            format!("{base}{}", suffix(kind))
        } else {
            format!("{base}{}.s{}", suffix(kind), self.index)
        }
    }
}

/// i32 [n_tokens]: the token ids (`inp_tokens`).
pub struct TokenIds {
    tensor: TensorHandle,
    n_tokens: usize,
}

impl TokenIds {
    fn new(ctx: &Context, shape: &GraphShape) -> TokenIds {
        let t = ctx
            .new_tensor(Type::I32, &[shape.n_tokens as i64])
            .set_name("inp_tokens")
            .set_input();
        TokenIds {
            tensor: ctx.handle(t),
            n_tokens: shape.n_tokens,
        }
    }

    pub fn tensor<'g>(&self, ctx: &'g Context) -> Tensor<'g> {
        ctx.get(self.tensor)
    }
}

impl GraphInput for TokenIds {
    fn set(&self, ctx: &Context, ub: &UBatch<'_>, s: &mut Scratch) -> Result<(), GgmlError> {
        s.i32.clear();
        s.i32.extend(ub.tokens.iter().map(|&t| t as i32));
        self.tensor(ctx).write_i32(&s.i32)
    }

    fn can_reuse(&self, shape: &GraphShape) -> bool {
        self.n_tokens == shape.n_tokens
    }
}

/// i32 [n_tokens]: the position of each token (`inp_pos`), for RoPE; for multi-section RoPE
/// i32 [4 n_tokens], one run of positions per section (a text token's: `p, p, p, 0`).
pub struct Positions {
    tensor: TensorHandle,
    n_tokens: usize,
    sections: bool,
}

impl Positions {
    fn new(ctx: &Context, shape: &GraphShape) -> Positions {
        Self::make(ctx, shape.n_tokens, false)
    }

    fn make(ctx: &Context, n_tokens: usize, sections: bool) -> Positions {
        let per = if sections { 4 } else { 1 };
        let t = ctx
            .new_tensor(Type::I32, &[(n_tokens * per) as i64])
            .set_name("inp_pos")
            .set_input();
        Positions {
            tensor: ctx.handle(t),
            n_tokens,
            sections,
        }
    }

    pub fn tensor<'g>(&self, ctx: &'g Context) -> Tensor<'g> {
        ctx.get(self.tensor)
    }
}

impl GraphInput for Positions {
    fn set(&self, ctx: &Context, ub: &UBatch<'_>, _: &mut Scratch) -> Result<(), GgmlError> {
        if !self.sections {
            return self.tensor(ctx).write_i32(ub.pos);
        }
        let mut all = Vec::with_capacity(ub.pos.len() * 4);
        for _ in 0..3 {
            all.extend_from_slice(ub.pos);
        }
        all.resize(ub.pos.len() * 4, 0);
        self.tensor(ctx).write_i32(&all)
    }

    fn can_reuse(&self, shape: &GraphShape) -> bool {
        self.n_tokens == shape.n_tokens
    }
}

/// f32 [1, 1, n_tokens]: the factor Q is multiplied by at each token's position
/// (`inp_attn_scale`, Llama 4 style temperature tuning; see [`AttnTemperature`]).
pub struct AttnTemp {
    tensor: TensorHandle,
    n_tokens: usize,
    temp: AttnTemperature,
}

impl AttnTemp {
    fn new(ctx: &Context, n_tokens: usize, temp: AttnTemperature) -> AttnTemp {
        let t = ctx
            .new_tensor(Type::F32, &[1, 1, n_tokens as i64])
            .set_name("inp_attn_scale")
            .set_input();
        AttnTemp {
            tensor: ctx.handle(t),
            n_tokens,
            temp,
        }
    }
}

impl GraphInput for AttnTemp {
    fn set(&self, ctx: &Context, ub: &UBatch<'_>, s: &mut Scratch) -> Result<(), GgmlError> {
        s.f32.clear();
        s.f32.extend(ub.pos.iter().map(|&p| self.temp.factor(p)));
        ctx.get(self.tensor).write_f32(&s.f32)
    }

    fn can_reuse(&self, shape: &GraphShape) -> bool {
        self.n_tokens == shape.n_tokens
    }
}

/// The inputs of the attention layers of one kind.
pub struct KvInputs {
    pub mask: KqMask,
    pub rows: CacheRows,
}

/// f16 (flash attention) or f32 [n_kv, n_tokens]: 0 where a token may attend to a cell, -inf
/// where not (`attn_inp_kq_mask`, `_swa` for the local layers): causal, and within the window.
pub struct KqMask {
    tensor: TensorHandle,
    /// f16 bits (flash attention) rather than f32 (soft_max).
    f16: bool,
    /// Attended cells.
    n_kv: u32,
    /// Its sequence's place in the batch and rows.
    seq: usize,
    span: Range<usize>,
    n_tokens: usize,
    /// How many positions back a token sees (itself included).
    window: u32,
    /// Cells of the layers (position p lives in cell `p % cells`).
    cells: u32,
}

impl KqMask {
    fn new(ctx: &Context, kv: &KvCache, kind: AttnKind, seq: Seq) -> KqMask {
        let cells = kv.kind_cells(kind);
        let n_kv = seq.n_kv.min(cells);
        let n_tokens = seq.span.len();
        // Flash attention exactly when V is stored untransposed; its mask is f16.
        let f16 = !kv.v_trans;
        let ty = if f16 { Type::F16 } else { Type::F32 };
        let t = ctx
            .new_tensor(ty, &[n_kv as i64, n_tokens as i64])
            .set_name(&seq.name("attn_inp_kq_mask", kind))
            .set_input();
        KqMask {
            tensor: ctx.handle(t),
            f16,
            n_kv,
            seq: seq.index,
            span: seq.span,
            n_tokens,
            window: kv.kind_window(kind),
            cells,
        }
    }

    pub fn tensor<'g>(&self, ctx: &'g Context) -> Tensor<'g> {
        ctx.get(self.tensor)
    }

    /// Cells the layers attend to.
    pub fn n_kv(&self) -> u32 {
        self.n_kv
    }
}

impl GraphInput for KqMask {
    fn set(&self, ctx: &Context, ub: &UBatch<'_>, s: &mut Scratch) -> Result<(), GgmlError> {
        let (n_kv, w, cells) = (self.n_kv, self.window, self.cells);
        let pos = &ub.pos[self.span.clone()];
        if self.f16 {
            causal_mask(&mut s.f16, pos, n_kv, w, cells, 0x0000, 0xFC00);
            self.tensor(ctx).write_f16_bits(&s.f16)
        } else {
            let neg = f32::NEG_INFINITY;
            causal_mask(&mut s.f32, pos, n_kv, w, cells, 0.0, neg);
            self.tensor(ctx).write_f32(&s.f32)
        }
    }

    fn can_reuse(&self, shape: &GraphShape) -> bool {
        shape.seqs.get(self.seq).is_some_and(|q| {
            self.n_tokens == q.n_tokens
                && self.span.start == shape.span(self.seq).start
                && self.n_kv == q.n_kv.min(self.cells)
        })
    }
}

/// i64 [n_tokens]: the cache row each token's K goes to (`inp_k_idxs`, `_swa` for a local
/// layers' ring), V's too (the same tensor), or for a transposed V the index of each of its
/// values, [n_tokens * n_embd_v] (`inp_v_idxs`).
pub struct CacheRows {
    k: TensorHandle,
    v: TensorHandle,
    /// Cells of the layers (position p lives in cell `p % cells`).
    cells: u32,
    /// Values per cell of a transposed V (None: V is stored by rows like K).
    v_trans_width: Option<u32>,
    /// Its sequence's rows of the batch.
    span: Range<usize>,
    n_tokens: usize,
    /// The full layers' tensors, shared by local layers without a ring: written by them.
    shared: bool,
}

impl CacheRows {
    fn new(ctx: &Context, kv: &KvCache, kind: AttnKind, seq: Seq, n_embd_v: u32) -> CacheRows {
        let nt = seq.span.len() as i64;
        let v_trans_width = kv.v_trans.then_some(n_embd_v);
        let n_v = v_trans_width.map_or(nt, |w| nt * w as i64);
        let make = |ne: i64, name: &str| {
            let t = ctx
                .new_tensor(Type::I64, &[ne])
                .set_name(&seq.name(name, kind))
                .set_input();
            ctx.handle(t)
        };
        let k = make(nt, "inp_k_idxs");
        CacheRows {
            k,
            // V stored by rows goes to K's rows: one tensor for both
            v: match v_trans_width {
                Some(_) => make(n_v, "inp_v_idxs"),
                None => k,
            },
            cells: kv.kind_cells(kind),
            v_trans_width,
            n_tokens: seq.span.len(),
            span: seq.span,
            shared: false,
        }
    }

    /// The same tensors, for layers with the same cells (written by their owner).
    fn shared(&self) -> CacheRows {
        CacheRows {
            shared: true,
            span: self.span.clone(),
            ..*self
        }
    }

    pub fn k<'g>(&self, ctx: &'g Context) -> Tensor<'g> {
        ctx.get(self.k)
    }

    pub fn v<'g>(&self, ctx: &'g Context) -> Tensor<'g> {
        ctx.get(self.v)
    }
}

impl GraphInput for CacheRows {
    fn set(&self, ctx: &Context, ub: &UBatch<'_>, s: &mut Scratch) -> Result<(), GgmlError> {
        if self.shared {
            return Ok(());
        }
        let cells = self.cells;
        let pos = &ub.pos[self.span.clone()];
        let rows = &mut s.i64;
        rows.clear();
        rows.extend(pos.iter().map(|&p| (p as u32 % cells) as i64));
        self.k(ctx).write_i64(rows)?;
        if let Some(width) = self.v_trans_width {
            // value d of a cell c sits at d * cells + c
            rows.clear();
            for &p in pos {
                let c = (p as u32 % cells) as i64;
                rows.extend((0..width as i64).map(|d| d * cells as i64 + c));
            }
            self.v(ctx).write_i64(rows)?;
        }
        Ok(())
    }

    fn can_reuse(&self, shape: &GraphShape) -> bool {
        // (The mask of the same sequence checks where its rows start.)
        self.n_tokens == self.span.len() && shape.n_tokens >= self.span.end
    }
}

/// i32 [n_outputs]: the rows whose logits are wanted (`inp_out_ids`); no tensor when every
/// row is.
pub struct OutputRows {
    tensor: Option<TensorHandle>,
    n_outputs: usize,
}

impl OutputRows {
    fn new(ctx: &Context, shape: &GraphShape) -> OutputRows {
        let tensor = (shape.n_outputs < shape.n_tokens).then(|| {
            let t = ctx
                .new_tensor(Type::I32, &[shape.n_outputs as i64])
                .set_name("inp_out_ids")
                .set_input();
            ctx.handle(t)
        });
        OutputRows {
            tensor,
            n_outputs: shape.n_outputs,
        }
    }

    /// None when every row is wanted.
    pub fn tensor<'g>(&self, ctx: &'g Context) -> Option<Tensor<'g>> {
        self.tensor.map(|h| ctx.get(h))
    }
}

impl GraphInput for OutputRows {
    fn set(&self, ctx: &Context, ub: &UBatch<'_>, _: &mut Scratch) -> Result<(), GgmlError> {
        match self.tensor(ctx) {
            Some(t) => t.write_i32(ub.out_rows),
            None => Ok(()),
        }
    }

    /// Whether the tensor exists is decided by the row count against the token count, and
    /// [`TokenIds`] checks the token count.
    fn can_reuse(&self, shape: &GraphShape) -> bool {
        self.n_outputs == shape.n_outputs
    }
}

/// The suffix of an input's name for layers of kind `kind`, as llama.cpp names them.
fn suffix(kind: AttnKind) -> &'static str {
    match kind {
        AttnKind::Full => "",
        AttnKind::Local => "_swa",
    }
}

/// Fill `out` with a [positions][n_kv] mask for a layer whose position x lives in cell
/// `x % ring`: row p is `zero` at the cells of positions `p - window + 1 ..= p` (those that
/// exist), `neg` (-inf) elsewhere. The ring is larger than the window plus a micro-batch, so
/// those cells are distinct and none is overwritten by a later token of the same batch.
fn causal_mask<T: Copy>(
    out: &mut Vec<T>,
    pos: &[i32],
    n_kv: u32,
    window: u32,
    ring: u32,
    zero: T,
    neg: T,
) {
    let n_kv = n_kv as usize;
    out.clear();
    out.resize(pos.len() * n_kv, neg);
    for (row, &p) in out.chunks_exact_mut(n_kv).zip(pos) {
        let p = p as u32;
        let first = (p as u64 + 1).saturating_sub(window as u64) as u32;
        let (a, b) = (first % ring, p % ring);
        if a <= b && p - first < ring {
            row[a as usize..=b as usize].fill(zero);
        } else {
            // the run wraps around the ring's end
            row[a as usize..].fill(zero);
            row[..=b as usize].fill(zero);
        }
    }
}

#[cfg(test)]
mod tests;
