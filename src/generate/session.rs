//! An evaluation session: a model, the KV caches of its sequences and a scheduler. Feeds token
//! batches through the forward graph in micro-batches and returns the logits that were asked
//! for.
//!
//! A session holds one sequence, or several (`n_seq`, for batches of prompts): each has a
//! cache of its own (an equal share of the context, whole multiples of [`KV_PAD`] cells), its
//! positions and its cells, so that what one sequence computes never depends on another's.
//! One micro-batch may carry one token of each of several sequences ([`Session::decode_step`]):
//! the weights are read once for all of them, each sequence attends over its own cache, and
//! every product computes each column as a one-column product would
//! (`WeightSet::matmul_invariant`). A prompt is evaluated one sequence at a time, in the
//! micro-batches it would have alone. So a sequence's logits are those it gets alone, bit for
//! bit.

use std::rc::Rc;

use crate::ggml::{Backend, Context, GgmlError, GraphHandle, Sched, TensorHandle, Type};
use crate::kv::{ContextFull, KvCache, KvError, KV_PAD};
use crate::model::inputs::{GraphShape, Inputs, Scratch, SeqShape, UBatch};
use crate::model::layers::Builder;
use crate::model::Model;

#[derive(Clone, Debug)]
pub struct SessionParams {
    /// KV cache size in tokens.
    pub n_ctx: u32,
    /// Tokens per forward graph (micro-batch).
    pub n_ubatch: u32,
    pub n_threads: usize,
    pub type_k: Type,
    pub type_v: Type,
    pub flash_attn: bool,
    /// Sliding-window layers keep the whole context instead of a ring of window + micro-batch
    /// cells (llama.cpp's `--swa-full`): more memory, but any prefix can be re-used.
    pub swa_full: bool,
    /// Sequences, each with its share of the `n_ctx` cells (1: one sequence, all of them).
    pub n_seq: u32,
    /// A step of several sequences computes each one's logits as alone, bit for bit (the
    /// default); off: by the fastest kernels for the step's size, results within rounding.
    pub invariant: bool,
    /// States each recurrent layer keeps (hybrid models): the current one and the ones before
    /// the last tokens of a micro-batch, so that a rollback within it (a rejected draft)
    /// needs no re-evaluation. At least 2 (a prompt's last token is re-used from its state
    /// before); speculative decoding wants one per verified token.
    pub snapshots: u32,
}

impl SessionParams {
    /// Cells of each sequence's cache: the whole context for one sequence; for several an
    /// equal share, whole multiples of [`KV_PAD`] (at least one), so that the cells a sequence
    /// attends to are padded as they would be alone.
    pub fn seq_cells(&self) -> u32 {
        if self.n_seq <= 1 {
            self.n_ctx
        } else {
            ((self.n_ctx / self.n_seq) / KV_PAD).max(1) * KV_PAD
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Ggml(#[from] GgmlError),
    #[error(transparent)]
    Kv(#[from] KvError),
    #[error(transparent)]
    ContextFull(#[from] ContextFull),
    #[error("token id {id} is outside the vocabulary of {n_vocab} tokens")]
    BadToken { id: u32, n_vocab: u32 },
    #[error("no sequence {slot}: the session has {n_seq}")]
    BadSeq { slot: usize, n_seq: usize },
    /// The interrupt check said stop between two micro-batches.
    #[error("interrupted")]
    Interrupted,
}

/// Which rows of a batch need logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Only the last token (generation).
    Last,
    /// Every token (speculative verification).
    All,
    /// Tokens at batch index `n` and after (perplexity scores the second half of a chunk).
    From(usize),
}

pub struct Session {
    // Field order is drop order: the graph before the scheduler that allocated it, the
    // scheduler before the backends it uses.
    built: Option<Built>,
    /// A graph context to build the next graph in (reset, not reallocated).
    spare_ctx: Option<Context>,
    sched: Sched,
    /// The backends of the devices the model has layers on (GPU, remote), in split order.
    devices: Vec<Backend>,
    backend: Backend,
    /// One cache per sequence.
    seqs: Vec<KvCache>,
    model: Rc<Model>,
    params: SessionParams,
    logits: Vec<f32>,
    /// The tokens and positions of the micro-batch being evaluated (kept, like `scratch`).
    tokens: Vec<u32>,
    pos: Vec<i32>,
    /// Host buffers the graph inputs are written through, kept for the next micro-batch.
    scratch: Scratch,
    /// Asked between micro-batches; true stops a long prompt early.
    interrupt: Option<fn() -> bool>,
    /// Re-use the last graph for a micro-batch of the same shape (`EMBER_NO_GRAPH_REUSE`
    /// turns it off, to compare).
    reuse_graphs: bool,
    /// The scheduler and the graph context have room for verification steps.
    verify_room: bool,
}

impl Session {
    pub fn new(model: Rc<Model>, params: SessionParams) -> Result<Session, EvalError> {
        let off = &model.offload;
        // On a device the cache is padded to 256 cells as llama.cpp pads its context:
        // ggml-cuda's fast flash-attention kernels need a multiple of 256 cells.
        let n_cells = if off.any() {
            params.seq_cells().div_ceil(KV_PAD) * KV_PAD
        } else {
            params.seq_cells()
        };
        let ring = model
            .hp
            .kv_shape()
            .ring(n_cells, params.n_ubatch, params.swa_full);
        let seqs = caches(&model, &params, (n_cells, ring))?;
        let backend = Backend::cpu(params.n_threads)?;
        let devices = off
            .devices
            .iter()
            .map(Backend::for_device)
            .collect::<Result<Vec<_>, _>>()?;
        let sched = scheduler(&devices, &backend, model.graph_size(seqs.len(), false))?;
        let mut s = Session {
            built: None,
            spare_ctx: None,
            sched,
            devices,
            backend,
            seqs,
            model,
            params,
            logits: Vec::new(),
            tokens: Vec::new(),
            pos: Vec::new(),
            scratch: Scratch::default(),
            interrupt: None,
            reuse_graphs: crate::switches::Switches::get().graph_reuse,
            verify_room: false,
        };
        s.reserve()?;
        Ok(s)
    }

    /// Allocate compute buffers for the largest graphs up front: a full micro-batch of one
    /// sequence, and with several a step of one token each.
    fn reserve(&mut self) -> Result<(), EvalError> {
        self.built = None;
        let size = self.seqs[0].size();
        let n = self.params.n_ubatch.min(size) as usize;
        let ctx = self
            .model
            .graph_context(self.seqs.len(), self.verify_room)?;
        let mut shapes = vec![GraphShape::single(n, size, n, 0)];
        if self.seqs.len() > 1 {
            let seqs = (0..self.seqs.len())
                .map(|slot| SeqShape {
                    slot,
                    n_tokens: 1,
                    n_kv: size,
                })
                .collect();
            shapes.push(GraphShape {
                n_tokens: self.seqs.len(),
                n_outputs: self.seqs.len(),
                seqs,
                invariant: self.params.invariant,
                columns: false,
            });
        }
        let mut ctx = ctx;
        for shape in shapes {
            ctx.reset();
            let kvs: Vec<&KvCache> = shape.seqs.iter().map(|s| &self.seqs[s.slot]).collect();
            let mut b = Builder::new(&ctx, &self.model, &kvs, &shape);
            let _ = self.model.arch.build(&mut b);
            self.sched.reserve(&b.graph)?;
        }
        self.spare_ctx = Some(ctx);
        Ok(())
    }

    pub fn model(&self) -> &Rc<Model> {
        &self.model
    }

    pub fn params(&self) -> &SessionParams {
        &self.params
    }

    /// The cache of the first (in a one-sequence session, the only) sequence.
    pub fn kv(&self) -> &KvCache {
        &self.seqs[0]
    }

    /// How many sequences the session holds.
    pub fn n_seq(&self) -> usize {
        self.seqs.len()
    }

    /// The cache of sequence `slot`.
    pub fn seq_kv(&self, slot: usize) -> &KvCache {
        &self.seqs[slot]
    }

    /// Positions evaluated so far (of the first sequence).
    pub fn n_past(&self) -> u32 {
        self.seqs[0].cells.used()
    }

    /// Positions sequence `slot` has evaluated.
    pub fn seq_n_past(&self, slot: usize) -> u32 {
        self.seqs[slot].cells.used()
    }

    /// Cells of one sequence's cache.
    pub fn n_ctx(&self) -> u32 {
        self.seqs[0].size()
    }

    /// Forget positions from `n` on (their cells are overwritten by later batches). Returns
    /// the positions kept: fewer than `n` (zero) when the sliding-window layers' ring no
    /// longer holds the window before `n`; the caller then evaluates those tokens again.
    pub fn truncate(&mut self, n: u32) -> u32 {
        self.seqs[0].truncate(n)
    }

    pub fn clear(&mut self) {
        self.seqs[0].clear();
    }

    /// Forget everything sequence `slot` evaluated (a new prompt takes its place).
    pub fn clear_seq(&mut self, slot: usize) {
        self.seqs[slot].clear();
    }

    /// Forget sequence `slot`'s positions from `n` on; returns the positions kept (see
    /// [`truncate`](Self::truncate)).
    pub fn truncate_seq(&mut self, slot: usize, n: u32) -> u32 {
        self.seqs[slot].truncate(n)
    }

    /// The most positions a rollback right after a micro-batch can undo without
    /// re-evaluating: the recurrent states' snapshots minus one in a hybrid model (what
    /// bounds a speculative draft), else unbounded.
    pub fn max_rollback(&self) -> usize {
        match self.seqs[0].recurrent() {
            Some(rs) => rs.slots().saturating_sub(1) as usize,
            None => usize::MAX,
        }
    }

    /// Keep `n` recurrent snapshots per layer (a hybrid model about to decode speculatively,
    /// with drafts of up to `n - 1` tokens): the caches are made anew, empty.
    pub fn set_snapshots(&mut self, n: u32) -> Result<(), EvalError> {
        if self.seqs[0].recurrent().is_none() || self.params.snapshots == n.max(2) {
            return Ok(());
        }
        self.params.snapshots = n.max(2);
        self.built = None;
        let cells = (self.seqs[0].size(), self.seqs[0].cells.ring());
        self.seqs = caches(&self.model, &self.params, cells)?;
        Ok(())
    }

    /// Keep a checkpoint of sequence 0's recurrent states at its current position (a hybrid
    /// model; nothing otherwise), so that a later truncate to here or one token before needs
    /// no re-evaluation from the start. Called after each prompt.
    pub fn checkpoint(&mut self) -> Result<(), EvalError> {
        self.checkpoint_seq(0)
    }

    /// [`checkpoint`](Self::checkpoint) for sequence `slot`.
    pub fn checkpoint_seq(&mut self, slot: usize) -> Result<(), EvalError> {
        Ok(self.seqs[slot].checkpoint()?)
    }

    /// Whether positions can be copied between sequences ([`copy_prefix`](Self::copy_prefix)):
    /// not when sliding-window layers keep a ring (a ring's cells hold later positions), nor
    /// in a hybrid model (a recurrent state is not a prefix of rows).
    pub fn can_copy_prefix(&self) -> bool {
        let c = &self.seqs[0].cells;
        c.ring() >= c.size() && self.seqs[0].recurrent().is_none()
    }

    /// Make sequence `to` hold positions `0..n` of sequence `from` (a shared prompt prefix
    /// evaluated once): their K and V rows copied, `to`'s later positions forgotten.
    pub fn copy_prefix(&mut self, from: usize, to: usize, n: u32) -> Result<(), EvalError> {
        let n_seq = self.seqs.len();
        if from >= n_seq || to >= n_seq || from == to {
            return Err(EvalError::BadSeq { slot: to, n_seq });
        }
        let n = n.min(self.seqs[from].cells.used());
        assert!(self.can_copy_prefix(), "no copies between rings");
        let (src, dst) = (&self.seqs[from], &self.seqs[to]);
        let mut buf = Vec::new();
        let cells = src.size() as usize;
        for il in 0..self.model.hp.n_layer as usize {
            if !src.has_kv(il) {
                continue;
            }
            let (sc, dc) = (src.ctx(), dst.ctx());
            for (a, b, is_v) in [(src.k(il), dst.k(il), false), (src.v(il), dst.v(il), true)] {
                let (a, b) = (sc.get(a), dc.get(b));
                let transposed = is_v && src.v_trans;
                if transposed {
                    // value d of cell c at d * cells + c: each channel's first n cells
                    let elt = a.ty().row_size(1);
                    let width = a.ne()[0] as usize;
                    buf.resize(n as usize * elt, 0);
                    for d in 0..width {
                        let at = d * cells * elt;
                        a.read_bytes(at, &mut buf)?;
                        b.write_bytes(at, &buf)?;
                    }
                } else {
                    buf.resize(a.ty().row_size(a.ne()[0]) * n as usize, 0);
                    a.read_bytes(0, &mut buf)?;
                    b.write_bytes(0, &buf)?;
                }
            }
        }
        self.seqs[to].cells.restore(n);
        Ok(())
    }

    /// Sequence 0's recurrent states at position `n` (see `KvCache::states_at`).
    pub(crate) fn states_at(&self, n: u32) -> Result<Option<crate::kv::States>, GgmlError> {
        self.seqs[0].states_at(n)
    }

    /// Write sequence 0's recurrent states as those at position `n`.
    pub(crate) fn put_states(
        &mut self,
        n: u32,
        count: u32,
        bytes: &[Vec<u8>],
    ) -> Result<(), GgmlError> {
        self.seqs[0].put_states(n, count, bytes)
    }

    /// Mark positions `0..n` as filled (their K and V rows were written directly; the local
    /// layers' only from `kv().cells.window_start(n)` on).
    pub(crate) fn set_n_past(&mut self, n: u32) {
        self.seqs[0].cells.restore(n);
    }

    /// A check run between micro-batches of a long batch: when it returns true, `eval` stops
    /// with [`EvalError::Interrupted`], keeping the positions already evaluated.
    pub fn set_interrupt(&mut self, check: Option<fn() -> bool>) {
        self.interrupt = check;
    }

    /// Turn graph reuse between micro-batches of the same shape on or off (on by default).
    pub fn set_graph_reuse(&mut self, on: bool) {
        self.reuse_graphs = on;
        if !on {
            self.built = None;
        }
    }

    /// Compute buffer bytes, on the CPU and on the devices.
    pub fn compute_buffer_bytes(&self) -> usize {
        self.sched.buffer_size(&self.backend)
            + self
                .devices
                .iter()
                .map(|g| self.sched.buffer_size(g))
                .sum::<usize>()
    }

    /// Evaluate `tokens` at the next positions (of the first sequence). Returns the logits of
    /// the wanted rows, `n_vocab` floats per row, in order.
    pub fn eval(&mut self, tokens: &[u32], want: Want) -> Result<&[f32], EvalError> {
        self.eval_seq(0, tokens, want)
    }

    /// Evaluate `tokens` at sequence `slot`'s next positions, in micro-batches of that
    /// sequence alone. Returns the logits of the wanted rows, `n_vocab` floats per row.
    pub fn eval_seq(
        &mut self,
        slot: usize,
        tokens: &[u32],
        want: Want,
    ) -> Result<&[f32], EvalError> {
        self.check(slot, tokens)?;
        self.logits.clear();
        let ub = self.params.n_ubatch.max(1) as usize;
        for (i, chunk) in tokens.chunks(ub).enumerate() {
            if i > 0 && self.interrupt.is_some_and(|stop| stop()) {
                return Err(EvalError::Interrupted);
            }
            let base = i * ub;
            let first = match want {
                Want::All => 0,
                Want::Last => tokens.len() - 1,
                Want::From(n) => n,
            };
            let lo = first.saturating_sub(base).min(chunk.len());
            let (rows, keep): (Vec<i32>, bool) = if lo < chunk.len() {
                ((lo as i32..chunk.len() as i32).collect(), true)
            } else {
                // A graph always has an output; one discarded row costs next to nothing.
                (vec![chunk.len() as i32 - 1], false)
            };
            self.eval_ubatch(&[(slot, chunk)], &rows, keep, false)?;
        }
        Ok(&self.logits)
    }

    /// One token for each of several sequences (distinct slots), in one micro-batch: each
    /// sequence's logits are those it would get evaluating its token alone, bit for bit.
    /// Returns `n_vocab` logits per step, in order.
    pub fn decode_step(&mut self, steps: &[(usize, u32)]) -> Result<&[f32], EvalError> {
        if let [(slot, token)] = *steps {
            return self.eval_seq(slot, &[token], Want::Last);
        }
        for (i, &(slot, token)) in steps.iter().enumerate() {
            self.check(slot, &[token])?;
            if steps[..i].iter().any(|&(s, _)| s == slot) {
                return Err(EvalError::BadSeq {
                    slot,
                    n_seq: self.seqs.len(),
                });
            }
        }
        self.logits.clear();
        let segs: Vec<(usize, [u32; 1])> = steps.iter().map(|&(s, t)| (s, [t])).collect();
        let segs: Vec<(usize, &[u32])> = segs.iter().map(|(s, t)| (*s, &t[..])).collect();
        let rows: Vec<i32> = (0..steps.len() as i32).collect();
        self.eval_ubatch(&segs, &rows, true, false)?;
        Ok(&self.logits)
    }

    /// Makes room for verification steps ([`Session::eval_verify`]): their graphs attend row
    /// by row, so they need more nodes than the scheduler was sized for.
    pub fn enable_verify(&mut self) -> Result<(), EvalError> {
        if self.verify_room {
            return Ok(());
        }
        self.verify_room = true;
        let size = self.model.graph_size(self.seqs.len(), true);
        self.sched = scheduler(&self.devices, &self.backend, size)?;
        self.spare_ctx = None;
        self.reserve()
    }

    /// A verification step of speculative decoding in sequence 0: `tokens` (the next token and
    /// a draft after it, at most [`VERIFY_ROWS`](crate::model::VERIFY_ROWS)) at the next
    /// positions, logits for each, every row's attention computed as decoding its token alone
    /// would (see `Builder::rows_alone`). Without [`enable_verify`](Self::enable_verify), or
    /// for more rows, the tokens are evaluated as a prompt micro-batch.
    pub fn eval_verify(&mut self, tokens: &[u32]) -> Result<&[f32], EvalError> {
        self.eval_verify_seq(0, tokens)
    }

    /// [`eval_verify`](Self::eval_verify) in sequence `slot`.
    pub fn eval_verify_seq(&mut self, slot: usize, tokens: &[u32]) -> Result<&[f32], EvalError> {
        if !self.verify_room
            || tokens.len() > crate::model::VERIFY_ROWS
            || tokens.len() > self.params.n_ubatch as usize
        {
            return self.eval_seq(slot, tokens, Want::All);
        }
        self.check(slot, tokens)?;
        self.logits.clear();
        let rows: Vec<i32> = (0..tokens.len() as i32).collect();
        self.eval_ubatch(&[(slot, tokens)], &rows, true, true)?;
        Ok(&self.logits)
    }

    /// Whether `tokens` may be evaluated in sequence `slot`: it exists, the ids are in the
    /// vocabulary and its cache has room.
    fn check(&self, slot: usize, tokens: &[u32]) -> Result<(), EvalError> {
        let Some(kv) = self.seqs.get(slot) else {
            return Err(EvalError::BadSeq {
                slot,
                n_seq: self.seqs.len(),
            });
        };
        let n_vocab = self.model.hp.n_vocab;
        if let Some(&id) = tokens.iter().find(|&&t| t >= n_vocab) {
            return Err(EvalError::BadToken { id, n_vocab });
        }
        if kv.cells.used() as usize + tokens.len() > kv.size() as usize {
            return Err(ContextFull {
                used: kv.cells.used(),
                size: kv.size(),
                wanted: tokens.len() as u32,
            }
            .into());
        }
        Ok(())
    }

    /// One micro-batch: the tokens of each `(slot, tokens)` at that sequence's next positions,
    /// logits kept for `rows` (of the whole batch) when `keep`.
    fn eval_ubatch(
        &mut self,
        segs: &[(usize, &[u32])],
        rows: &[i32],
        keep: bool,
        columns: bool,
    ) -> Result<(), EvalError> {
        self.pos.clear();
        self.tokens.clear();
        let mut seqs = Vec::with_capacity(segs.len());
        for (i, &(slot, tokens)) in segs.iter().enumerate() {
            self.seqs[slot].sync_recurrent()?;
            let p0 = match self.seqs[slot].cells.append(tokens.len() as u32) {
                Ok(p) => p,
                Err(e) => {
                    // undo the sequences appended before this one
                    for &(s, t) in &segs[..i] {
                        let kept = self.seqs[s].cells.used() - t.len() as u32;
                        self.seqs[s].cells.truncate(kept);
                    }
                    return Err(e.into());
                }
            };
            self.pos
                .extend((0..tokens.len() as i32).map(|i| p0 as i32 + i));
            self.tokens.extend_from_slice(tokens);
            seqs.push(SeqShape {
                slot,
                n_tokens: tokens.len(),
                n_kv: self.seqs[slot].cells.n_kv(),
            });
        }
        let shape = GraphShape {
            n_tokens: self.tokens.len(),
            n_outputs: rows.len(),
            seqs,
            invariant: self.params.invariant,
            columns,
        };
        let ub = UBatch {
            tokens: &self.tokens,
            pos: &self.pos,
            out_rows: rows,
        };
        // a verification graph's row-by-row attention spans depend on the cells in use, which
        // the shape does not hold: it is built afresh each time
        let reuse = self.reuse_graphs
            && !columns
            && (self.built.as_ref()).is_some_and(|b| b.inputs.can_reuse(&shape));
        if !reuse {
            if let Some(old) = self.built.take() {
                self.spare_ctx = Some(old.ctx);
            }
            let kvs: Vec<&KvCache> = shape.seqs.iter().map(|s| &self.seqs[s.slot]).collect();
            let built = build(&self.model, &kvs, self.spare_ctx.take(), &shape)?;
            self.sched.alloc_graph(&built.ctx.graph(built.graph))?;
            if self.model.offload.any() && log::log_enabled!(log::Level::Info) {
                let (splits, mut bytes) = self.sched.transfers(&built.ctx.graph(built.graph));
                if self.model.offload.output.is_some() {
                    // the logits, read back from the output layer's device
                    bytes += (shape.n_outputs * self.model.hp.n_vocab as usize * 4) as u64;
                }
                log::info!(
                    "devices: {} tokens: graph in {splits} pieces, {bytes} bytes copied between \
                     devices ({} per token)",
                    shape.n_tokens,
                    bytes / shape.n_tokens.max(1) as u64
                );
            }
            self.built = Some(built);
        }
        let n_vocab = self.model.hp.n_vocab as usize;
        let b = self.built.as_ref().expect("built above");
        b.inputs.set(&b.ctx, &ub, &mut self.scratch)?;
        if let Err(e) = self.sched.compute(&b.ctx.graph(b.graph)) {
            self.built = None;
            return Err(e.into());
        }
        for &(slot, tokens) in segs {
            self.seqs[slot].advanced(tokens.len() as u32);
        }
        if keep {
            let start = self.logits.len();
            self.logits.resize(start + rows.len() * n_vocab, 0.0);
            b.ctx.get(b.logits).read_f32(0, &mut self.logits[start..])?;
        }
        Ok(())
    }
}

/// One cache per sequence of `p`, `cells` (the full layers', the local layers') each; the K
/// and V of offloaded layers live on their device with their weights.
fn caches(model: &Model, p: &SessionParams, cells: (u32, u32)) -> Result<Vec<KvCache>, EvalError> {
    let shape = model.hp.kv_shape();
    let devices = model.offload.layer_buffer_types();
    (0..p.n_seq.max(1))
        .map(|_| {
            let (k, v, v_trans) = (p.type_k, p.type_v, !p.flash_attn);
            KvCache::placed(&shape, cells, k, v, v_trans, &devices, p.snapshots)
        })
        .map(|r| r.map_err(EvalError::from))
        .collect()
}

/// Build the forward graph of `model` over `kvs` (one cache per sequence of the batch) for
/// micro-batches of shape `shape`, in
/// `spare` (the last graph's context, reset) when there is one: its megabyte or two of tensor
/// headers would otherwise be allocated and freed on every rebuild, which lets the heap's
/// cached free memory (and so the resident size) drift in a long chat.
/// A scheduler over the devices' backends and the CPU's (last) for graphs of up to
/// `graph_size` nodes; with `EMBER_DEBUG_TENSORS`, every computed node's name, op, shape and
/// sum on stderr, to set beside llama.cpp's llama-eval-callback output when an architecture
/// disagrees.
fn scheduler(devices: &[Backend], cpu: &Backend, graph_size: usize) -> Result<Sched, EvalError> {
    let backends: Vec<&Backend> = devices.iter().chain([cpu]).collect();
    let mut sched = Sched::new(&backends, graph_size)?;
    if crate::switches::Switches::get().debug_tensors {
        sched.set_observer(Some(Box::new(|n| {
            let sum = n.sum.map_or("-".to_string(), |s| format!("{s:.6}"));
            eprintln!("tensor {} {} {:?} sum = {sum}", n.name, n.op, n.ne);
            for r in &n.rows {
                eprintln!("    {r:10.4?}");
            }
        })));
    }
    Ok(sched)
}

fn build(
    model: &Model,
    kvs: &[&KvCache],
    spare: Option<Context>,
    shape: &GraphShape,
) -> Result<Built, EvalError> {
    let ctx = match spare {
        Some(mut c) => {
            c.reset();
            c
        }
        None => model.graph_context(kvs.len(), shape.columns)?,
    };
    let (graph, inputs, logits) = {
        let mut b = Builder::new(&ctx, model, kvs, shape);
        let logits = model.arch.build(&mut b);
        (ctx.graph_handle(&b.graph), b.inp, ctx.handle(logits))
    };
    Ok(Built {
        graph,
        inputs,
        logits,
        ctx,
    })
}

/// The last forward graph, kept for the next micro-batch its inputs fit (decoding token after
/// token): only its inputs are written again, it is neither built nor allocated anew
/// (llama.cpp's graph reuse). Positions, the masks and the cache rows written are all inputs,
/// so the same graph serves every step until the attended cell count grows.
struct Built {
    graph: GraphHandle,
    /// Its input tensors, which say whether the graph fits a micro-batch.
    inputs: Inputs,
    logits: TensorHandle,
    ctx: Context,
}
