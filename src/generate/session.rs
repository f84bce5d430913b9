//! An evaluation session: a model, its KV cache and a scheduler. Feeds token batches through
//! the forward graph in micro-batches and returns the logits that were asked for.

use std::rc::Rc;

use crate::ggml::{Backend, Context, GgmlError, GraphHandle, Sched, TensorHandle, Type};
use crate::kv::{ContextFull, KvCache, KvError, KV_PAD};
use crate::model::inputs::{GraphShape, Inputs, Scratch, UBatch};
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
    /// The GPU's backend, when the model has layers offloaded to it.
    gpu: Option<Backend>,
    backend: Backend,
    kv: KvCache,
    model: Rc<Model>,
    params: SessionParams,
    logits: Vec<f32>,
    /// The positions of the micro-batch being evaluated (kept, like `scratch`).
    pos: Vec<i32>,
    /// Host buffers the graph inputs are written through, kept for the next micro-batch.
    scratch: Scratch,
    /// Asked between micro-batches; true stops a long prompt early.
    interrupt: Option<fn() -> bool>,
    /// Re-use the last graph for a micro-batch of the same shape (`EMBER_NO_GRAPH_REUSE`
    /// turns it off, to compare).
    reuse_graphs: bool,
}

impl Session {
    pub fn new(model: Rc<Model>, params: SessionParams) -> Result<Session, EvalError> {
        let hp = &model.hp;
        let shape = hp.kv_shape();
        let off = &model.offload;
        // The KV cache of offloaded layers lives on the GPU with their weights.
        let kv_gpu = off
            .buffer_type()
            .map(|b| (b, off.n_layer - off.n_gpu_layers));
        // On a GPU the cache is padded to 256 cells as llama.cpp pads its context: ggml-cuda's
        // fast flash-attention kernels need a multiple of 256 cells.
        let n_cells = if kv_gpu.is_some() {
            params.n_ctx.div_ceil(KV_PAD) * KV_PAD
        } else {
            params.n_ctx
        };
        let ring = shape.ring(n_cells, params.n_ubatch, params.swa_full);
        let kv = KvCache::placed(
            &shape,
            (n_cells, ring),
            params.type_k,
            params.type_v,
            !params.flash_attn,
            kv_gpu,
        )?;
        let backend = Backend::cpu(params.n_threads)?;
        let gpu = match off.device.filter(|_| off.any()) {
            Some(d) => Some(Backend::for_device(&d)?),
            None => None,
        };
        let backends: Vec<&Backend> = gpu.iter().chain([&backend]).collect();
        let mut sched = Sched::new(&backends, model.graph_size())?;
        if crate::switches::Switches::get().debug_tensors {
            // Every computed node's name, op, shape and sum on stderr, to set beside
            // llama.cpp's llama-eval-callback output when an architecture disagrees.
            sched.set_observer(Some(Box::new(|n| {
                let sum = n.sum.map_or("-".to_string(), |s| format!("{s:.6}"));
                eprintln!("tensor {} {} {:?} sum = {sum}", n.name, n.op, n.ne);
                for r in &n.rows {
                    eprintln!("    {r:10.4?}");
                }
            })));
        }
        let mut s = Session {
            built: None,
            spare_ctx: None,
            sched,
            gpu,
            backend,
            kv,
            model,
            params,
            logits: Vec::new(),
            pos: Vec::new(),
            scratch: Scratch::default(),
            interrupt: None,
            reuse_graphs: crate::switches::Switches::get().graph_reuse,
        };
        s.reserve()?;
        Ok(s)
    }

    /// Allocate compute buffers for the largest graph up front.
    fn reserve(&mut self) -> Result<(), EvalError> {
        self.built = None;
        let n = self.params.n_ubatch.min(self.params.n_ctx) as usize;
        let ctx = self.model.graph_context()?;
        {
            let shape = GraphShape {
                n_tokens: n,
                n_kv: self.kv.size(),
                n_outputs: n,
            };
            let mut b = Builder::new(&ctx, &self.model, &self.kv, shape);
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

    pub fn kv(&self) -> &KvCache {
        &self.kv
    }

    /// Positions evaluated so far.
    pub fn n_past(&self) -> u32 {
        self.kv.cells.used()
    }

    pub fn n_ctx(&self) -> u32 {
        self.kv.size()
    }

    /// Forget positions from `n` on (their cells are overwritten by later batches). Returns
    /// the positions kept: fewer than `n` (zero) when the sliding-window layers' ring no
    /// longer holds the window before `n`; the caller then evaluates those tokens again.
    pub fn truncate(&mut self, n: u32) -> u32 {
        self.kv.cells.truncate(n)
    }

    pub fn clear(&mut self) {
        self.kv.cells.clear();
    }

    /// Mark positions `0..n` as filled (their K and V rows were written directly; the local
    /// layers' only from `kv().cells.window_start(n)` on).
    pub(crate) fn set_n_past(&mut self, n: u32) {
        self.kv.cells.restore(n);
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

    /// Compute buffer bytes, on the CPU and on the GPU.
    pub fn compute_buffer_bytes(&self) -> usize {
        self.sched.buffer_size(&self.backend)
            + self.gpu.as_ref().map_or(0, |g| self.sched.buffer_size(g))
    }

    /// Evaluate `tokens` at the next positions. Returns the logits of the wanted rows,
    /// `n_vocab` floats per row, in order.
    pub fn eval(&mut self, tokens: &[u32], want: Want) -> Result<&[f32], EvalError> {
        let n_vocab = self.model.hp.n_vocab;
        if let Some(&id) = tokens.iter().find(|&&t| t >= n_vocab) {
            return Err(EvalError::BadToken { id, n_vocab });
        }
        if self.kv.cells.used() as usize + tokens.len() > self.kv.size() as usize {
            return Err(ContextFull {
                used: self.kv.cells.used(),
                size: self.kv.size(),
                wanted: tokens.len() as u32,
            }
            .into());
        }
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
            self.eval_ubatch(chunk, &rows, keep)?;
        }
        Ok(&self.logits)
    }

    fn eval_ubatch(&mut self, tokens: &[u32], rows: &[i32], keep: bool) -> Result<(), EvalError> {
        let p0 = self.kv.cells.append(tokens.len() as u32)?;
        self.pos.clear();
        self.pos
            .extend((0..tokens.len() as i32).map(|i| p0 as i32 + i));
        let ub = UBatch {
            tokens,
            pos: &self.pos,
            out_rows: rows,
        };
        let shape = GraphShape::of(&ub, &self.kv.cells);
        let reuse =
            self.reuse_graphs && (self.built.as_ref()).is_some_and(|b| b.inputs.can_reuse(&shape));
        if !reuse {
            if let Some(old) = self.built.take() {
                self.spare_ctx = Some(old.ctx);
            }
            let built = build(&self.model, &self.kv, self.spare_ctx.take(), shape)?;
            self.sched.alloc_graph(&built.ctx.graph(built.graph))?;
            self.built = Some(built);
        }
        let n_vocab = self.model.hp.n_vocab as usize;
        let b = self.built.as_ref().expect("built above");
        b.inputs.set(&b.ctx, &ub, &mut self.scratch)?;
        if let Err(e) = self.sched.compute(&b.ctx.graph(b.graph)) {
            self.built = None;
            return Err(e.into());
        }
        if keep {
            let start = self.logits.len();
            self.logits.resize(start + rows.len() * n_vocab, 0.0);
            b.ctx.get(b.logits).read_f32(0, &mut self.logits[start..])?;
        }
        Ok(())
    }
}

/// Build the forward graph of `model` over `kv` for micro-batches of shape `shape`, in
/// `spare` (the last graph's context, reset) when there is one: its megabyte or two of tensor
/// headers would otherwise be allocated and freed on every rebuild, which lets the heap's
/// cached free memory (and so the resident size) drift in a long chat.
fn build(
    model: &Model,
    kv: &KvCache,
    spare: Option<Context>,
    shape: GraphShape,
) -> Result<Built, EvalError> {
    let ctx = match spare {
        Some(mut c) => {
            c.reset();
            c
        }
        None => model.graph_context()?,
    };
    let (graph, inputs, logits) = {
        let mut b = Builder::new(&ctx, model, kv, shape);
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
