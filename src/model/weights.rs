//! Binding GGUF tensors to ggml tensors: by name, with the expected shape, and placed either in
//! place in the file mapping (zero copy) or in ggml's CPU repack buffer where ggml says its
//! interleaved kernels apply (llama.cpp's default too), or, for layers offloaded with `-ngl`
//! (see [`super::offload`]), copied into the GPU's memory. Once placed, each matrix gets its
//! kernel route ([`Route`]: which kernel multiplies it, by number of columns), and the graph
//! builder multiplies by [`WeightSet::matmul`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::ggml::kernels::{Kernel, Placement, Route};
use crate::ggml::{BufferType, Context, GgmlError, HostMemory, Tensor, TensorHandle, Type};
use crate::gguf::{GgufFile, TensorInfo};

use super::names::W;
use super::offload::{Offload, OffloadRequest};
use super::tune::{self, tunable_placement, Candidate, Shape, TuneMode, TuneReport};

#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    #[error("tensor '{0}' is missing from the model file")]
    Missing(String),
    #[error("tensor '{name}' has shape {found:?}, expected {expected:?}")]
    Shape {
        name: String,
        expected: Vec<u64>,
        found: Vec<u64>,
    },
    #[error("tensor '{name}' has type {ty}, which ggml cannot use here")]
    Type { name: String, ty: String },
    #[error(transparent)]
    Ggml(#[from] GgmlError),
}

/// How weights get into memory.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Use tensors in place from the file mapping (otherwise copy them into ggml buffers).
    pub mmap: bool,
    /// Repack matrix weights into ggml's interleaved CPU layouts where supported.
    pub repack: bool,
    /// `-ngl`, `--main-gpu`, `--tensor-split` (remote devices: those `--rpc` registered).
    pub offload: OffloadRequest,
    /// Whether kernel routes are chosen by timing them (`super::tune`), and with how many
    /// threads (those the model will run with).
    pub tune: TuneMode,
    pub threads: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            mmap: true,
            repack: true,
            offload: OffloadRequest::default(),
            tune: TuneMode::Off,
            threads: 1,
        }
    }
}

/// The model's weight tensors, in up to three ggml contexts (plain, repacked, on the GPU), and
/// the kernel route of each matrix.
pub struct WeightSet {
    plain: Context,
    repacked: Option<Context>,
    /// One context per offload device (a GPU, a remote device).
    devices: Vec<Context>,
    pub placements: Placements,
    /// The matrices (left operands of products), by name in binding order, with their routes.
    matrices: Vec<(String, TensorHandle)>,
    routes: HashMap<TensorHandle, Route>,
    /// What timing the kernels found (empty when routes were not tuned).
    pub tuning: TuneReport,
}

impl WeightSet {
    pub fn get(&self, h: TensorHandle) -> Tensor<'_> {
        if let Some(r) = self.repacked.as_ref().filter(|r| r.owns(h)) {
            return r.get(h);
        }
        match self.devices.iter().find(|c| c.owns(h)) {
            Some(c) => c.get(h),
            None => self.plain.get(h),
        }
    }

    /// `w · x` in graph context `ctx`, by the kernel `w`'s route picks for `x`'s columns.
    pub fn matmul<'a>(&'a self, ctx: &'a Context, w: TensorHandle, x: Tensor<'a>) -> Tensor<'a> {
        let kernel = self
            .routes
            .get(&w)
            .map_or(Kernel::Ggml, |r| r.kernel(x.ne()[1]));
        ctx.mul_mat_by(kernel, self.get(w), x)
    }

    /// `w · x` in graph context `ctx`, each column of `x` multiplied as a one-column product
    /// would multiply it (bit for bit): a batch of several sequences' tokens, whose results
    /// must not depend on each other. See [`Route::invariant`].
    pub fn matmul_invariant<'a>(
        &'a self,
        ctx: &'a Context,
        w: TensorHandle,
        x: Tensor<'a>,
    ) -> Tensor<'a> {
        match self.routes.get(&w) {
            Some(r) => ctx.mul_mat_invariant(r, self.get(w), x),
            None => ctx.mul_mat(self.get(w), x),
        }
    }

    /// The kernel route of matrix `w` (ggml's matmul throughout for a tensor not bound as one).
    pub fn route(&self, w: TensorHandle) -> Route {
        self.routes
            .get(&w)
            .cloned()
            .unwrap_or_else(|| Route::ggml(Placement::of(self.get(w))))
    }

    /// How many tokens one forward pass may evaluate and still give each token the logits a
    /// one-token pass gives, bit for bit: the fewest [`Route::exact_columns`] of any matrix
    /// (`None`: no route limits it). A greedy speculative step that must pick exactly what
    /// plain decoding picks verifies at most this many tokens (a draft one shorter). With
    /// weights in ggml's CPU repack buffer this is 3.
    pub fn exact_columns(&self) -> Option<usize> {
        self.routes.values().filter_map(Route::exact_columns).min()
    }

    /// Times Ember's kernels against ggml's where both could multiply a matrix, and leaves to
    /// ggml's the columns where it was faster (`super::tune`).
    fn tune(&mut self, mode: TuneMode, threads: usize) {
        let candidates: Vec<Candidate> = self
            .matrices
            .iter()
            .filter_map(|(_, h)| {
                let r = self.routes.get(h)?;
                if !tunable_placement(r.placement()) {
                    return None;
                }
                let t = self.get(*h);
                Some(Candidate {
                    handle: *h,
                    shape: Shape {
                        ty: t.ty(),
                        ne: [t.ne()[0], t.ne()[1]],
                        repacked: r.placement() == Placement::Repacked,
                    },
                    tunables: r.tunables(),
                })
            })
            .collect();
        let (refused, report) = tune::tune(&candidates, |h| self.get(h), threads, mode);
        for (h, ts) in refused {
            if let Some(r) = self.routes.get_mut(&h) {
                ts.iter().for_each(|t| r.refuse(t));
            }
        }
        self.tuning = report;
    }

    /// The route table, one row per group of matrices alike (same name but for the layer,
    /// type, shape, memory and route), in binding order.
    pub fn route_table(&self) -> Vec<RouteRow> {
        let mut rows: Vec<RouteRow> = Vec::new();
        for (name, h) in &self.matrices {
            let t = self.get(*h);
            let route = self.route(*h);
            let row = RouteRow {
                name: layer_pattern(name),
                count: 1,
                ty: t.ty(),
                ne: [t.ne()[0], t.ne()[1]],
                route,
            };
            match rows.iter_mut().find(|r| r.same_group(&row)) {
                Some(r) => r.count += 1,
                None => rows.push(row),
            }
        }
        rows
    }
}

/// Matrices alike and their route (see [`WeightSet::route_table`]).
#[derive(Clone, Debug)]
pub struct RouteRow {
    /// The name, `blk.*.` for every layer's.
    pub name: String,
    /// How many matrices (layers).
    pub count: usize,
    pub ty: Type,
    /// [columns, rows]
    pub ne: [i64; 2],
    pub route: Route,
}

impl RouteRow {
    fn same_group(&self, o: &RouteRow) -> bool {
        (&self.name, self.ty, self.ne, &self.route) == (&o.name, o.ty, o.ne, &o.route)
    }
}

/// `blk.12.attn_q.weight` → `blk.*.attn_q.weight`.
fn layer_pattern(name: &str) -> String {
    match name.strip_prefix("blk.").and_then(|r| r.split_once('.')) {
        Some((n, rest)) if n.bytes().all(|b| b.is_ascii_digit()) => format!("blk.*.{rest}"),
        _ => name.to_string(),
    }
}

/// Where the weights ended up (bytes).
#[derive(Clone, Debug, Default)]
pub struct Placements {
    pub mapped: u64,
    pub copied: u64,
    pub repacked: u64,
    pub n_repacked: usize,
    /// Bytes and tensors copied to the GPU.
    pub gpu: u64,
    pub n_gpu: usize,
}

/// A bound tensor: its name and its device (an index into the offload's devices).
type Key = (String, Option<usize>);

/// Binds tensors from a GGUF file.
pub struct Binder<'f> {
    file: &'f GgufFile,
    opts: LoadOptions,
    plain: Context,
    repack: Option<(Context, BufferType)>,
    /// One context per offload device, with the device's memory.
    devices: Vec<(Context, BufferType)>,
    offload: Offload,
    /// By name and device (None: host memory).
    bound: HashMap<Key, (TensorHandle, &'f TensorInfo)>,
    order: Vec<Key>,
    /// Those bound (at least once) as the left operand of products.
    matrices: HashSet<Key>,
}

impl<'f> Binder<'f> {
    pub fn new(
        file: &'f GgufFile,
        opts: LoadOptions,
        offload: &Offload,
    ) -> Result<Self, WeightError> {
        // One more for a tied output matrix bound again on the GPU.
        let n = file.tensors().len() + 2;
        let plain = Context::new(n, 0)?;
        let repack = match opts.repack.then(BufferType::cpu_repack).flatten() {
            Some(buft) => Some((Context::new(n, 0)?, buft)),
            None => None,
        };
        let devices = (0..offload.devices.len())
            .map(|d| {
                let buft = offload
                    .buffer_type(d)
                    .ok_or_else(|| GgmlError::BackendInit(offload.devices[d].name()))?;
                Ok((Context::new(n, 0)?, buft))
            })
            .collect::<Result<Vec<_>, GgmlError>>()?;
        Ok(Binder {
            file,
            opts,
            plain,
            repack,
            devices,
            offload: offload.clone(),
            bound: HashMap::new(),
            order: Vec::new(),
            matrices: HashSet::new(),
        })
    }

    /// The device weight `w` of `layer` (None: a model-wide tensor) goes to (None: host).
    fn device_of(&self, w: W, layer: Option<u32>) -> Option<usize> {
        match (w, layer) {
            (_, Some(il)) => self.offload.layer_device(il),
            (W::TokenEmbd, None) => None,
            // Read by every layer's RoPE: where the last layer is.
            (W::RopeFreqs | W::RopeFactorsLong | W::RopeFactorsShort, None) => self
                .offload
                .layer_device(self.offload.n_layer.saturating_sub(1)),
            (_, None) => self.offload.output,
        }
    }

    fn bind(
        &mut self,
        name: &str,
        device: Option<usize>,
        shape: &[u64],
        usage: Usage,
        required: bool,
    ) -> Result<Option<TensorHandle>, WeightError> {
        let matmul = usage == Usage::Matrix;
        // A tensor bound twice in the same memory (tied embeddings) is the same ggml tensor;
        // tied embeddings whose output layer is on a device get a second copy there, as in
        // llama.cpp.
        let on_gpu = device.is_some();
        let key = (name.to_string(), device);
        if let Some((h, _)) = self.bound.get(&key) {
            if matmul {
                self.matrices.insert(key);
            }
            return Ok(Some(*h));
        }
        let Some(info) = self.file.tensor(name) else {
            return if required {
                Err(WeightError::Missing(name.to_string()))
            } else {
                Ok(None)
            };
        };
        let mut found = info.dims.clone();
        while found.len() > shape.len() && found.last() == Some(&1) {
            found.pop();
        }
        if found != shape {
            return Err(WeightError::Shape {
                name: name.into(),
                expected: shape.to_vec(),
                found: info.dims.clone(),
            });
        }
        let ty = Type::from_raw(info.ggml_type.as_u32()).ok_or_else(|| WeightError::Type {
            name: name.into(),
            ty: info.ggml_type.name().into(),
        })?;
        let ne: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        // Repacked where ggml's CPU backend would run the product on the repacked layout, as
        // llama.cpp decides (experts: for their per-expert product).
        let repack_ctx = match (&self.repack, usage, ne.as_slice()) {
            (Some((ctx, buft)), Usage::Matrix, &[ne0, ne1])
                if !on_gpu && buft.cpu_supports_mul_mat(ty, ne0, ne1) =>
            {
                Some(ctx)
            }
            (Some((ctx, buft)), Usage::Experts { n_used }, &[ne0, ne1, ne2])
                if !on_gpu && buft.cpu_supports_mul_mat_id(ty, [ne0, ne1, ne2], n_used) =>
            {
                Some(ctx)
            }
            _ => None,
        };
        let gpu_ctx = device.map(|d| &self.devices[d].0);
        let ctx = gpu_ctx.or(repack_ctx).unwrap_or(&self.plain);
        let t = ctx.new_tensor(ty, &ne).set_name(name);
        let h = ctx.handle(t);
        self.bound.insert(key.clone(), (h, info));
        if matmul {
            self.matrices.insert(key.clone());
        }
        self.order.push(key);
        Ok(Some(h))
    }

    /// The output matrix of a model whose output shares the token embeddings (`w`): the
    /// same tensor, unless the output layer is on the GPU and the embeddings are not.
    pub fn tied_output(&mut self, w: W, shape: &[u64]) -> Result<TensorHandle, WeightError> {
        let device = self.offload.output;
        Ok(self
            .bind(&w.name(None, "weight"), device, shape, Usage::Matrix, true)?
            .expect("required"))
    }

    /// A required stack of expert matrices `[k, m, n_expert]` (the left operand of
    /// mul_mat_id; `n_used` experts per token).
    pub fn experts(
        &mut self,
        w: W,
        layer: Option<u32>,
        shape: &[u64],
        n_used: u32,
    ) -> Result<TensorHandle, WeightError> {
        let usage = Usage::Experts {
            n_used: n_used as i64,
        };
        let t = self.layer_tensor((w, layer, "weight"), shape, usage, true)?;
        Ok(t.expect("required"))
    }

    /// An optional stack of expert matrices (see [`experts`](Self::experts)).
    pub fn opt_experts(
        &mut self,
        w: W,
        layer: Option<u32>,
        shape: &[u64],
        n_used: u32,
    ) -> Result<Option<TensorHandle>, WeightError> {
        let usage = Usage::Experts {
            n_used: n_used as i64,
        };
        self.layer_tensor((w, layer, "weight"), shape, usage, false)
    }

    /// Tensor `{w's name}.{suffix}` of `layer`, for `usage`, on the device its layer runs
    /// on; `required`: a missing one is an error (else `None`).
    fn layer_tensor(
        &mut self,
        (w, layer, suffix): (W, Option<u32>, &str),
        shape: &[u64],
        usage: Usage,
        required: bool,
    ) -> Result<Option<TensorHandle>, WeightError> {
        let g = self.device_of(w, layer);
        self.bind(&w.name(layer, suffix), g, shape, usage, required)
    }

    /// A required tensor used element-wise or by get_rows.
    pub fn plain(
        &mut self,
        w: W,
        layer: Option<u32>,
        shape: &[u64],
    ) -> Result<TensorHandle, WeightError> {
        let t = self.layer_tensor((w, layer, "weight"), shape, Usage::Plain, true)?;
        Ok(t.expect("required"))
    }

    /// A required matrix (the left operand of mul_mat).
    pub fn matrix(
        &mut self,
        w: W,
        layer: Option<u32>,
        shape: &[u64],
    ) -> Result<TensorHandle, WeightError> {
        let t = self.layer_tensor((w, layer, "weight"), shape, Usage::Matrix, true)?;
        Ok(t.expect("required"))
    }

    pub fn opt_matrix(
        &mut self,
        w: W,
        layer: Option<u32>,
        shape: &[u64],
    ) -> Result<Option<TensorHandle>, WeightError> {
        self.layer_tensor((w, layer, "weight"), shape, Usage::Matrix, false)
    }

    pub fn opt_plain(
        &mut self,
        w: W,
        layer: Option<u32>,
        shape: &[u64],
    ) -> Result<Option<TensorHandle>, WeightError> {
        self.layer_tensor((w, layer, "weight"), shape, Usage::Plain, false)
    }

    /// A required tensor whose name has no suffix (`blk.N.ssm_a`), used element-wise.
    pub fn bare(
        &mut self,
        w: W,
        layer: Option<u32>,
        shape: &[u64],
    ) -> Result<TensorHandle, WeightError> {
        let t = self.layer_tensor((w, layer, ""), shape, Usage::Plain, true)?;
        Ok(t.expect("required"))
    }

    /// A required bias (`{name}.bias`).
    pub fn bias(
        &mut self,
        w: W,
        layer: Option<u32>,
        shape: &[u64],
    ) -> Result<TensorHandle, WeightError> {
        let t = self.layer_tensor((w, layer, "bias"), shape, Usage::Plain, true)?;
        Ok(t.expect("required"))
    }

    pub fn opt_bias(
        &mut self,
        w: W,
        layer: Option<u32>,
        shape: &[u64],
    ) -> Result<Option<TensorHandle>, WeightError> {
        self.layer_tensor((w, layer, "bias"), shape, Usage::Plain, false)
    }

    /// Allocate and fill every bound tensor.
    pub fn finish(self, host: Arc<GgufFile>) -> Result<WeightSet, WeightError> {
        let mut p = Placements::default();
        let plain = self.plain;
        let mut copy = Vec::new();
        if self.opts.mmap {
            let region = plain.attach_host_memory(host.clone() as HostMemory)?;
            for key in &self.order {
                let (h, info) = self.bound[key];
                if plain.owns(h) {
                    plain.place_in_host(plain.get(h), region, info.offset as usize)?;
                    p.mapped += info.size;
                }
            }
        } else {
            p.copied += plain.alloc_tensors(BufferType::cpu(), true)? as u64;
            copy.extend(
                self.order
                    .iter()
                    .map(|k| self.bound[k])
                    .filter(|(h, _)| plain.owns(*h)),
            );
        }
        for (h, info) in copy {
            plain.get(h).write_bytes(0, host.tensor_data(info))?;
        }
        let repacked = match self.repack {
            Some((ctx, buft)) => {
                p.repacked += ctx.alloc_tensors(buft, true)? as u64;
                let items: Vec<_> = self
                    .order
                    .iter()
                    .map(|k| self.bound[k])
                    .filter(|(h, _)| ctx.owns(*h))
                    .map(|(h, info)| (h, host.tensor_data(info)))
                    .collect();
                // Repacking is CPU work: spread it over the cores.
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                ctx.write_tensors(&items, threads)?;
                p.n_repacked = items.len();
                Some(ctx)
            }
            None => None,
        };
        let mut devices = Vec::with_capacity(self.devices.len());
        for (ctx, buft) in self.devices {
            p.gpu += ctx.alloc_tensors(buft, true)? as u64;
            for key in &self.order {
                let (h, info) = self.bound[key];
                if ctx.owns(h) {
                    ctx.get(h).write_bytes(0, host.tensor_data(info))?;
                    p.n_gpu += 1;
                }
            }
            devices.push(ctx);
        }
        let mut ws = WeightSet {
            plain,
            repacked,
            devices,
            placements: p,
            matrices: Vec::new(),
            routes: HashMap::new(),
            tuning: TuneReport::default(),
        };
        // Routes are decided once the weights are where they stay.
        let gpu_layers = self.offload.local_gpu();
        for key in self.order.iter().filter(|k| self.matrices.contains(*k)) {
            let (h, _) = self.bound[key];
            ws.routes.insert(h, Route::decide(ws.get(h), gpu_layers));
            ws.matrices.push((key.0.clone(), h));
        }
        ws.tune(self.opts.tune, self.opts.threads);
        // The decode op's column kernels timed now, on this thread, not at the first product
        // by the op's threads (one of which spins meanwhile).
        let _ = crate::ggml::kernels::column_kernels();
        Ok(ws)
    }
}

/// What a bound tensor is used for (decides whether it may be repacked and gets a route).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Usage {
    /// element-wise, get_rows
    Plain,
    /// the left operand of mul_mat (routed: `crate::ggml::kernels`)
    Matrix,
    /// the experts of mul_mat_id, `n_used` per token (always ggml's product)
    Experts { n_used: i64 },
}

impl AsRef<[u8]> for GgufFile {
    fn as_ref(&self) -> &[u8] {
        self.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::layer_pattern;

    #[test]
    fn layer_names_group_across_layers() {
        assert_eq!(layer_pattern("blk.12.attn_q.weight"), "blk.*.attn_q.weight");
        assert_eq!(
            layer_pattern("blk.0.ffn_down.weight"),
            "blk.*.ffn_down.weight"
        );
        assert_eq!(layer_pattern("output.weight"), "output.weight");
        assert_eq!(layer_pattern("blk.x.attn_q.weight"), "blk.x.attn_q.weight");
    }
}
