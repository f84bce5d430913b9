//! Models: hyper-parameters, weights bound by name and shape, and the forward graph of each
//! supported architecture (see [`arch`] for how to add one).

pub mod agree;
pub mod arch;
pub mod hparams;
pub mod inputs;
pub mod layers;
pub mod names;
pub mod offload;
pub mod tune;
pub mod weights;

use std::path::Path;
use std::sync::Arc;

use crate::ggml::TensorHandle;
use crate::gguf::{GgufError, GgufFile};

pub use arch::Arch;
pub use hparams::{Hparams, HparamsError};
pub use names::W;
pub use offload::{Offload, OffloadError};
pub use weights::{LoadOptions, Placements, WeightError, WeightSet};

/// One transformer block's weights; architectures fill the fields they use.
#[derive(Clone, Debug)]
pub struct Layer {
    /// (n_embd); OLMo 2 has none (it norms the attention's output instead)
    pub attn_norm: Option<TensorHandle>,
    /// the Q, K and V projections, separate or fused
    pub qkv: Qkv,
    /// (n_head * head_dim_v, n_embd)
    pub wo: TensorHandle,
    pub bo: Option<TensorHandle>,
    /// (n_head), attention sinks: a learned logit per head in each softmax (gpt-oss)
    pub attn_sinks: Option<TensorHandle>,
    /// RMSNorm of Q and K: per head (head_dim) or over the whole projection (OLMo 2)
    pub q_norm: Option<TensorHandle>,
    pub k_norm: Option<TensorHandle>,
    pub attn_post_norm: Option<TensorHandle>,
    pub ffn_norm: Option<TensorHandle>,
    /// the feed-forward block's matrices
    pub ffn: Ffn,
    pub ffn_post_norm: Option<TensorHandle>,
    /// A Gated DeltaNet layer's own tensors (Qwen3.5); its `qkv` is then the fused input
    /// projection of Q, K and V (before the convolution) and `wo` its output projection.
    pub gdn: Option<Box<DeltaNet>>,
    /// A shared expert beside the routed ones, gated by a sigmoid (Qwen3.5 MoE).
    pub shexp: Option<SharedExpert>,
}

/// The tensors of a Gated DeltaNet layer besides its input and output projections.
#[derive(Clone, Debug)]
pub struct DeltaNet {
    /// (n_embd, d_inner): the output gate `z`
    pub gate: TensorHandle,
    /// (d_conv, conv channels), f32: the causal convolution's kernels
    pub conv1d: TensorHandle,
    /// (dt_rank): the bias added to alpha before the softplus
    pub dt_bias: TensorHandle,
    /// (dt_rank): -exp(A_log), the decay per value head
    pub a: TensorHandle,
    /// (n_embd, dt_rank): beta's projection (the write strength)
    pub beta: TensorHandle,
    /// (n_embd, dt_rank): alpha's projection (the decay's time step)
    pub alpha: TensorHandle,
    /// (head size): the gated RMSNorm of the output
    pub norm: TensorHandle,
}

/// A shared expert: a gated feed-forward block every token goes through, its output scaled
/// by `sigmoid(gate_inp · x)`.
#[derive(Clone, Debug)]
pub struct SharedExpert {
    /// (n_embd): the scalar gate's weights
    pub gate_inp: TensorHandle,
    pub ffn: Gated,
}

/// Q, K and V projections.
#[derive(Clone, Debug)]
pub enum Qkv {
    Split {
        /// (n_embd, n_head * head_dim)
        wq: TensorHandle,
        /// (n_embd, n_head_kv * head_dim)
        wk: TensorHandle,
        /// (n_embd, n_head_kv * head_dim_v)
        wv: TensorHandle,
        bq: Option<TensorHandle>,
        bk: Option<TensorHandle>,
        bv: Option<TensorHandle>,
    },
    /// One matrix (n_embd, q + k + v) whose rows are Q's, then K's, then V's (Phi-3).
    Fused {
        w: TensorHandle,
        b: Option<TensorHandle>,
    },
}

/// A feed-forward block.
#[derive(Clone, Debug)]
pub enum Ffn {
    Gated(Gated),
    Moe(Experts),
}

/// A gated feed-forward block: down(act(gate x) * up x).
#[derive(Clone, Debug)]
pub struct Gated {
    /// (n_embd, n_ff); `None` when fused into `up` (Phi-3: up is (n_embd, 2 n_ff), gate first)
    pub gate: Option<TensorHandle>,
    /// (n_embd, n_ff)
    pub up: TensorHandle,
    /// (n_ff, n_embd)
    pub down: TensorHandle,
    pub gate_b: Option<TensorHandle>,
    pub up_b: Option<TensorHandle>,
    pub down_b: Option<TensorHandle>,
}

/// A mixture of gated experts: a router picks `n_expert_used` of them per token, whose
/// outputs are summed weighted by the router's (normalised) probabilities.
#[derive(Clone, Debug)]
pub struct Experts {
    /// (n_embd, n_expert), the router
    pub gate_inp: TensorHandle,
    /// the gate and up matrices
    pub gate_up: GateUp,
    /// (n_ff_exp, n_embd, n_expert)
    pub down: TensorHandle,
    /// Biases (gpt-oss): the router's (n_expert), and each expert's, (n_ff_exp, n_expert) for
    /// gate and up and (n_embd, n_expert) for down.
    pub gate_inp_b: Option<TensorHandle>,
    pub gate_b: Option<TensorHandle>,
    pub up_b: Option<TensorHandle>,
    pub down_b: Option<TensorHandle>,
}

/// The experts' gate and up matrices: separate, or one stack whose rows are each expert's gate
/// rows then its up rows.
#[derive(Clone, Debug)]
pub enum GateUp {
    /// each (n_embd, n_ff_exp, n_expert)
    Split {
        gate: TensorHandle,
        up: TensorHandle,
    },
    /// (n_embd, 2 n_ff_exp, n_expert)
    Fused(TensorHandle),
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Meta(#[from] crate::gguf::MetaError),
    #[error("unsupported architecture '{found}' (supported: {supported})")]
    UnsupportedArch { found: String, supported: String },
    #[error(transparent)]
    Hparams(#[from] HparamsError),
    #[error(transparent)]
    Disagree(#[from] agree::Disagreement),
    #[error(transparent)]
    Weights(#[from] WeightError),
    #[error("cannot lock the model in memory (--mlock): {0}")]
    Mlock(std::io::Error),
    #[error(transparent)]
    Offload(#[from] OffloadError),
}

/// A model's tensors bound by name and shape, not yet allocated.
struct Parts<'f> {
    b: weights::Binder<'f>,
    arch: Arch,
    hp: Hparams,
    tok_embd: TensorHandle,
    output_norm: TensorHandle,
    output: TensorHandle,
    output_b: Option<TensorHandle>,
    rope_freqs: Option<TensorHandle>,
    rope_long: Option<TensorHandle>,
    rope_short: Option<TensorHandle>,
    layers: Vec<Layer>,
    offload: Offload,
}

impl<'f> Parts<'f> {
    fn bind(file: &'f GgufFile, opts: LoadOptions) -> Result<Self, LoadError> {
        let arch_name = file.get_str("general.architecture")?.to_string();
        let arch = Arch::from_name(&arch_name).ok_or_else(|| LoadError::UnsupportedArch {
            found: arch_name.clone(),
            supported: Arch::names(),
        })?;
        let hp = arch.hparams(file)?;
        agree::check_vocab(file, &arch_name)?;
        let offload = Offload::plan(&opts.offload, hp.n_layer)?;
        let mut b = weights::Binder::new(file, opts, &offload)?;
        let (e, v) = (hp.n_embd as u64, hp.n_vocab as u64);
        let tok_embd = b.plain(W::TokenEmbd, None, &[e, v])?;
        let output_norm = b.plain(W::OutputNorm, None, &[e])?;
        let output = match b.opt_matrix(W::Output, None, &[e, v])? {
            Some(o) => o,
            None => b.tied_output(W::TokenEmbd, &[e, v])?,
        };
        let output_b = b.opt_bias(W::Output, None, &[v])?;
        let half_rot = [(hp.rope.n_rot / 2) as u64];
        let rope_freqs = b.opt_plain(W::RopeFreqs, None, &half_rot)?;
        // (llama.cpp binds them for Phi-3 whatever the scaling type, and refuses them in files
        // of other architectures unless it is LongRoPE)
        let rope_long = b.opt_plain(W::RopeFactorsLong, None, &half_rot)?;
        let rope_short = b.opt_plain(W::RopeFactorsShort, None, &half_rot)?;
        let layers = (0..hp.n_layer)
            .map(|il| arch.layer(&mut b, &hp, il))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Parts {
            b,
            arch,
            hp,
            tok_embd,
            output_norm,
            output,
            output_b,
            rope_freqs,
            rope_long,
            rope_short,
            layers,
            offload,
        })
    }
}

/// Open and validate a GGUF file through a read-only memory map; `mlock` pins its pages in RAM.
pub fn open_gguf(path: &Path, mlock: bool) -> Result<GgufFile, LoadError> {
    let open_err = |source| LoadError::Open {
        path: path.display().to_string(),
        source,
    };
    // Checked before opening: opening a FIFO would block, and a directory opens fine but
    // cannot be mapped ("No such device").
    let meta = std::fs::metadata(path).map_err(open_err)?;
    if meta.is_dir() {
        return Err(open_err(std::io::ErrorKind::IsADirectory.into()));
    }
    if !meta.is_file() {
        return Err(open_err(std::io::Error::other("not a regular file")));
    }
    let file = std::fs::File::open(path).map_err(open_err)?;
    let map = crate::ggml::map_file(&file).map_err(open_err)?;
    if mlock {
        map.lock().map_err(LoadError::Mlock)?;
    }
    Ok(GgufFile::from_mmap(map)?)
}

pub struct Model {
    pub arch: Arch,
    pub hp: Hparams,
    pub file: Arc<GgufFile>,
    pub weights: WeightSet,
    /// (n_embd, n_vocab)
    pub tok_embd: TensorHandle,
    /// (n_embd)
    pub output_norm: TensorHandle,
    /// (n_embd, n_vocab); the token embeddings when tied
    pub output: TensorHandle,
    /// (n_vocab), an output bias (some Qwen2 files)
    pub output_b: Option<TensorHandle>,
    /// (n_rot / 2), llama3-style RoPE frequency factors
    pub rope_freqs: Option<TensorHandle>,
    /// (n_rot / 2) each, LongRoPE's factors beyond and within the original context (Phi-3)
    pub rope_long: Option<TensorHandle>,
    pub rope_short: Option<TensorHandle>,
    pub layers: Vec<Layer>,
    /// Which layers run on a GPU (their weights and KV cache are there).
    pub offload: Offload,
}

/// Rows (the token and its draft) a verification step may hold: each is attended on its own,
/// so the graph grows with them.
pub const VERIFY_ROWS: usize = 64;

impl Model {
    /// A 64-bit fingerprint of the model file, to recognise state files made with it: the
    /// crate's [hash](crate::hash) of the file size, the header (metadata and tensor table, up to 64 MiB) and the first
    /// and last 4 KiB of every tensor's data.
    pub fn fingerprint(&self) -> u64 {
        let f = &self.file;
        let mut h = crate::hash::Hasher::new();
        h.write(&f.file_size().to_le_bytes());
        let bytes = f.bytes();
        let head = (f.data_offset() as usize).min(bytes.len()).min(64 << 20);
        h.write(&bytes[..head]);
        for t in f.tensors() {
            let d = f.tensor_data(t);
            h.write(&d[..d.len().min(4096)]);
            h.write(&d[d.len().saturating_sub(4096)..]);
        }
        h.finish()
    }

    /// Load a model from an opened GGUF file.
    pub fn load(file: Arc<GgufFile>, opts: LoadOptions) -> Result<Model, LoadError> {
        let Parts {
            b,
            arch,
            hp,
            tok_embd,
            output_norm,
            output,
            output_b,
            rope_freqs,
            rope_long,
            rope_short,
            layers,
            offload,
        } = Parts::bind(&file, opts)?;
        let weights = b.finish(file.clone())?;
        Ok(Model {
            arch,
            hp,
            file,
            weights,
            tok_embd,
            output_norm,
            output,
            output_b,
            rope_freqs,
            rope_long,
            rope_short,
            layers,
            offload,
        })
    }

    /// Whether Ember can run this file: everything [`Model::load`] checks (architecture,
    /// metadata, vocabulary, every tensor's name and shape), without allocating the weights.
    pub fn check(file: &GgufFile) -> Result<Arch, LoadError> {
        let opts = LoadOptions {
            repack: false,
            ..LoadOptions::default()
        };
        Ok(Parts::bind(file, opts)?.arch)
    }

    /// A context with room for one forward graph of this model over `n_seq` sequences and its
    /// tensors.
    pub fn graph_context(
        &self,
        n_seq: usize,
        verify: bool,
    ) -> Result<crate::ggml::Context, crate::ggml::GgmlError> {
        let n = self.graph_size(n_seq, verify);
        crate::ggml::Context::new(n + 16, n)
    }

    /// Nodes a forward graph of this model over a batch of `n_seq` sequences may need: each
    /// sequence attends on its own, and a product may be cut into column groups (see
    /// [`WeightSet::matmul_invariant`]).
    pub fn graph_size(&self, n_seq: usize, verify: bool) -> usize {
        (self.file.tensors().len() * 8).max(1024)
            + 64 * self.hp.n_layer as usize
            + if verify {
                // a verification step's attention, row by row (8 nodes a row and layer, twice
                // that for room)
                VERIFY_ROWS * 16 * self.hp.n_layer as usize
            } else {
                0
            }
            + if n_seq > 1 {
                (self.file.tensors().len() * 3 + 64 * self.hp.n_layer as usize) * n_seq
            } else {
                0
            }
    }
}
