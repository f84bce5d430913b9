//! `ggml_context` (tensor headers only: every context is `no_alloc`), tensors and graphs.

use std::ffi::CString;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use super::backend::ContextBuffers;
use super::{GgmlError, Type};
use ggml_sys as sys;

mod recurrent;
mod routing;

/// Owns a `ggml_context` that holds tensor headers and graphs (no tensor data).
pub struct Context {
    raw: NonNull<sys::ggml_context>,
    buffers: ContextBuffers,
    /// Values kept as long as the context's tensors: the user data of custom ops
    /// ([`Context::keep`]).
    kept: std::sync::Mutex<Vec<Box<dyn std::any::Any + Send>>>,
    id: u64,
}

static NEXT_CONTEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A lifetime-free reference to a tensor of a long-lived context (weights, KV cache), turned
/// back into a [`Tensor`] by [`Context::get`] on the same context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TensorHandle {
    ptr: NonNull<sys::ggml_tensor>,
    ctx_id: u64,
}

// SAFETY: a handle is an inert pointer; it is only dereferenced through `Context::get`, which
// checks it belongs to that (live) context.
unsafe impl Send for TensorHandle {}
// SAFETY: as above.
unsafe impl Sync for TensorHandle {}

/// A lifetime-free reference to a graph of a context, turned back into a [`Graph`] by
/// [`Context::graph`] on the same context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GraphHandle {
    ptr: NonNull<sys::ggml_cgraph>,
    ctx_id: u64,
}

// SAFETY: an inert pointer, only dereferenced through `Context::graph`, which checks it
// belongs to that (live) context.
unsafe impl Send for GraphHandle {}

// SAFETY: a context is only mutated through `&self` methods that ggml serialises per context
// (we never share one between threads concurrently: Ember builds graphs on one thread).
unsafe impl Send for Context {}

impl Context {
    /// A context with room for `n_tensors` tensor headers and one graph of `graph_size` nodes
    /// (pass 0 for none).
    pub fn new(n_tensors: usize, graph_size: usize) -> Result<Context, GgmlError> {
        // SAFETY: pure size computations in ggml.
        let mem = unsafe {
            n_tensors * sys::ggml_tensor_overhead()
                + if graph_size > 0 {
                    sys::ggml_graph_overhead_custom(graph_size, false)
                } else {
                    0
                }
        } + 1024;
        let params = sys::ggml_init_params {
            mem_size: mem,
            mem_buffer: std::ptr::null_mut(),
            no_alloc: true,
        };
        // SAFETY: ggml allocates `mem` bytes itself (mem_buffer is null) and returns null on failure.
        let raw = unsafe { sys::ggml_init(params) };
        NonNull::new(raw)
            .map(|raw| Context {
                raw,
                buffers: ContextBuffers::default(),
                kept: Default::default(),
                id: NEXT_CONTEXT_ID.fetch_add(1, Ordering::Relaxed),
            })
            .ok_or(GgmlError::ContextAlloc(mem))
    }

    /// Forget every tensor and graph made in this context (and free the buffers holding their
    /// data), keeping its memory for new ones: a graph rebuilt every few tokens then costs no
    /// allocation. The context takes a new id, so handles made before are refused.
    pub fn reset(&mut self) {
        self.buffers = ContextBuffers::default();
        self.kept.get_mut().map(|k| k.clear()).ok();
        // SAFETY: live context; `&mut self` means no `Tensor` or `Graph` borrows it any more.
        unsafe { sys::ggml_reset(self.as_ptr()) };
        self.id = NEXT_CONTEXT_ID.fetch_add(1, Ordering::Relaxed);
    }

    /// Keep `value` until the context is reset or dropped, at an address that does not move:
    /// the user data of a custom op, read by the op while a graph of this context computes.
    pub(super) fn keep<T: Send + 'static>(&self, value: T) -> *const T {
        let b = Box::new(value);
        let p: *const T = &*b;
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).push(b);
        p
    }

    pub(super) fn as_ptr(&self) -> *mut sys::ggml_context {
        self.raw.as_ptr()
    }

    pub(super) fn buffers(&self) -> &ContextBuffers {
        &self.buffers
    }

    fn wrap(&self, t: *mut sys::ggml_tensor) -> Tensor<'_> {
        // ggml aborts rather than returning null when a context is full, so null is a bug.
        Tensor {
            raw: NonNull::new(t).expect("ggml returned a null tensor"),
            ctx_id: self.id,
            _ctx: PhantomData,
        }
    }

    /// A new tensor of type `ty` with up to 4 dimensions (`ne[0]` first).
    pub fn new_tensor(&self, ty: Type, ne: &[i64]) -> Tensor<'_> {
        let c = self.as_ptr();
        let t = ty.raw();
        // SAFETY: `c` is a live context; ggml checks its own capacity (aborting when full).
        let p = unsafe {
            match *ne {
                [a] => sys::ggml_new_tensor_1d(c, t, a),
                [a, b] => sys::ggml_new_tensor_2d(c, t, a, b),
                [a, b, cc] => sys::ggml_new_tensor_3d(c, t, a, b, cc),
                [a, b, cc, d] => sys::ggml_new_tensor_4d(c, t, a, b, cc, d),
                _ => panic!("tensors have 1 to 4 dimensions, got {}", ne.len()),
            }
        };
        self.wrap(p)
    }

    /// A handle to `t`, a tensor of this context.
    pub fn handle(&self, t: Tensor<'_>) -> TensorHandle {
        assert_eq!(
            t.ctx_id, self.id,
            "handle() of a tensor from another context"
        );
        TensorHandle {
            ptr: t.raw,
            ctx_id: self.id,
        }
    }

    /// Whether `t` is a tensor of this context.
    pub(super) fn made(&self, t: Tensor<'_>) -> bool {
        t.ctx_id == self.id
    }

    /// Whether `h` refers to a tensor of this context.
    pub fn owns(&self, h: TensorHandle) -> bool {
        h.ctx_id == self.id
    }

    /// Write whole tensors of this context from host bytes, on up to `threads` threads at once
    /// (each thread takes every `threads`-th item). Used for weights that ggml repacks on
    /// upload: the repacking (and the page faults of reading the mapped file and filling the
    /// new buffer) then runs on every core.
    pub fn write_tensors(
        &self,
        items: &[(TensorHandle, &[u8])],
        threads: usize,
    ) -> Result<(), GgmlError> {
        let mut jobs = Vec::with_capacity(items.len());
        for &(h, data) in items {
            let t = self.get(h);
            t.check_io(0, data.len())?;
            jobs.push((SendTensor(t.as_ptr()), data));
        }
        let threads = threads.clamp(1, jobs.len().max(1));
        let jobs = &jobs;
        std::thread::scope(|scope| {
            for first in 0..threads {
                scope.spawn(move || {
                    for (t, data) in jobs.iter().skip(first).step_by(threads) {
                        // SAFETY: each tensor is allocated in a backend buffer and `data` fits
                        // it (checked above); the tensors are distinct, and a CPU buffer's
                        // set_tensor (a copy, or a repack into the tensor's own data) touches
                        // nothing but that tensor's data, so the writes do not race.
                        unsafe {
                            sys::ggml_backend_tensor_set(t.0, data.as_ptr().cast(), 0, data.len())
                        };
                    }
                });
            }
        });
        Ok(())
    }

    /// The tensor behind `h`. Panics if `h` was made by another context (a programming error).
    pub fn get(&self, h: TensorHandle) -> Tensor<'_> {
        assert_eq!(
            h.ctx_id, self.id,
            "tensor handle used with the wrong context"
        );
        Tensor {
            raw: h.ptr,
            ctx_id: self.id,
            _ctx: PhantomData,
        }
    }

    /// A lifetime-free handle to `g`, a graph of this context, to keep it with the context
    /// (graph reuse) and get it back with [`Context::graph`].
    pub fn graph_handle(&self, g: &Graph<'_>) -> GraphHandle {
        GraphHandle {
            ptr: g.raw,
            ctx_id: self.id,
        }
    }

    /// The graph behind `h`. Panics if `h` was made by another context (a programming error).
    pub fn graph(&self, h: GraphHandle) -> Graph<'_> {
        assert_eq!(
            h.ctx_id, self.id,
            "graph handle used with the wrong context"
        );
        Graph {
            raw: h.ptr,
            _ctx: PhantomData,
        }
    }

    /// A graph with room for `size` nodes, allocated in this context.
    pub fn new_graph(&self, size: usize) -> Graph<'_> {
        // SAFETY: live context; ggml aborts if the context lacks room (sized in `new`).
        let g = unsafe { sys::ggml_new_graph_custom(self.as_ptr(), size, false) };
        Graph {
            raw: NonNull::new(g).expect("ggml returned a null graph"),
            _ctx: PhantomData,
        }
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // Tensor memory first, then the headers.
        self.buffers.list.lock().map(|mut l| l.clear()).ok();
        // SAFETY: we own the context; tensors borrowing it are gone (lifetimes guarantee it).
        unsafe { sys::ggml_free(self.raw.as_ptr()) }
    }
}

/// A tensor pointer handed to a writer thread by [`Context::write_tensors`].
struct SendTensor(*mut sys::ggml_tensor);

// SAFETY: only used while the owning context is borrowed by `write_tensors`, one writer per
// tensor.
unsafe impl Send for SendTensor {}
unsafe impl Sync for SendTensor {}

/// A tensor header living in a [`Context`].
#[derive(Clone, Copy)]
pub struct Tensor<'ctx> {
    raw: NonNull<sys::ggml_tensor>,
    ctx_id: u64,
    _ctx: PhantomData<&'ctx Context>,
}

/// [`Tensor::is_plain_host_data`] of a live tensor header.
fn plain_host(h: &sys::ggml_tensor) -> bool {
    // SAFETY: a non-null buffer of a live tensor is a live ggml buffer.
    !h.buffer.is_null()
        && !h.data.is_null()
        && h.extra.is_null()
        && unsafe { sys::ggml_backend_buffer_is_host(h.buffer) }
}

impl<'ctx> Tensor<'ctx> {
    pub(super) fn as_ptr(self) -> *mut sys::ggml_tensor {
        self.raw.as_ptr()
    }

    fn header(&self) -> &sys::ggml_tensor {
        // SAFETY: the header lives as long as its context, which outlives 'ctx.
        unsafe { self.raw.as_ref() }
    }

    pub fn ne(&self) -> [i64; 4] {
        self.header().ne
    }

    pub fn nb(&self) -> [usize; 4] {
        self.header().nb
    }

    pub fn ty(&self) -> Type {
        Type::from_raw(self.header().type_ as u32).expect("ggml tensor with unknown type")
    }

    pub fn nbytes(&self) -> usize {
        // SAFETY: live tensor header.
        unsafe { sys::ggml_nbytes(self.as_ptr()) }
    }

    pub fn is_contiguous(&self) -> bool {
        // SAFETY: live tensor header.
        unsafe { sys::ggml_is_contiguous(self.as_ptr()) }
    }

    /// Whether the tensor's data is allocated in host memory in ggml's own layout (not in a
    /// GPU buffer, not repacked by an extra buffer type).
    pub fn is_plain_host_data(&self) -> bool {
        plain_host(self.header())
    }

    /// Whether the tensor's data is in host memory in ggml's own layout and allocated already:
    /// [`is_plain_host_data`](Self::is_plain_host_data), or a view (not yet placed in a buffer
    /// itself) of such a tensor.
    pub fn reads_host_data(&self) -> bool {
        let h = self.header();
        // SAFETY: a non-null `view_src` of a live tensor is a live tensor (views keep their
        // source's context alive: it outlives theirs or is theirs).
        plain_host(h)
            || (!h.data.is_null() && !h.view_src.is_null() && plain_host(unsafe { &*h.view_src }))
    }

    /// Whether the tensor's data is host memory in ggml's CPU repack buffer, that is, in the
    /// interleaved layout ggml chose for its type (Q4_K on an AVX2 CPU: `block_q4_Kx8`).
    pub fn is_cpu_repacked(&self) -> bool {
        let h = self.header();
        if h.buffer.is_null() || h.data.is_null() || h.extra.is_null() {
            return false;
        }
        // SAFETY: a non-null buffer of a live tensor is a live ggml buffer; its name is a
        // NUL-terminated string owned by its (static) buffer type. (ggml does not call this
        // buffer type "host", though its memory is: its layout is its own.)
        unsafe { std::ffi::CStr::from_ptr(sys::ggml_backend_buffer_name(h.buffer)) }.to_bytes()
            == b"CPU_REPACK"
    }

    pub fn n_elements(&self) -> i64 {
        // SAFETY: live tensor header.
        unsafe { sys::ggml_nelements(self.as_ptr()) }
    }

    pub fn name(&self) -> String {
        let name = &self.header().name;
        let bytes: Vec<u8> = name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Set the tensor's name (ggml truncates at 63 bytes).
    pub fn set_name(self, name: &str) -> Self {
        let c = CString::new(name.replace('\0', "")).expect("no NUL left");
        // SAFETY: ggml copies at most GGML_MAX_NAME-1 bytes from the NUL-terminated string.
        unsafe { sys::ggml_set_name(self.as_ptr(), c.as_ptr()) };
        self
    }

    pub fn set_input(self) -> Self {
        // SAFETY: sets a flag in a live header.
        unsafe { sys::ggml_set_input(self.as_ptr()) };
        self
    }

    pub fn set_output(self) -> Self {
        // SAFETY: sets a flag in a live header.
        unsafe { sys::ggml_set_output(self.as_ptr()) };
        self
    }

    /// Whether the tensor (or the tensor it views) has memory in a backend buffer.
    pub fn is_allocated(&self) -> bool {
        let h = self.header();
        let has_buffer = !h.buffer.is_null()
            || (!h.view_src.is_null() && {
                // SAFETY: view_src points to a live tensor header in a live context.
                !unsafe { (*h.view_src).buffer }.is_null()
            });
        !h.data.is_null() && has_buffer
    }

    fn check_io(&self, offset: usize, len: usize) -> Result<(), GgmlError> {
        if !self.is_allocated() {
            return Err(GgmlError::Tensor {
                name: self.name(),
                msg: "not allocated".into(),
            });
        }
        match offset.checked_add(len) {
            Some(end) if end <= self.nbytes() => Ok(()),
            _ => Err(GgmlError::Tensor {
                name: self.name(),
                msg: format!(
                    "access of {len} bytes at {offset} exceeds its {} bytes",
                    self.nbytes()
                ),
            }),
        }
    }

    /// Copy raw bytes into the tensor's data at byte `offset`.
    pub fn write_bytes(&self, offset: usize, data: &[u8]) -> Result<(), GgmlError> {
        self.check_io(offset, data.len())?;
        // SAFETY: the tensor is allocated in a backend buffer and [offset, offset+len) lies inside
        // its data (checked above); `data` is a valid readable slice.
        unsafe {
            sys::ggml_backend_tensor_set(self.as_ptr(), data.as_ptr().cast(), offset, data.len())
        };
        Ok(())
    }

    pub fn write_f32(&self, data: &[f32]) -> Result<(), GgmlError> {
        self.write_plain(data, Type::F32)
    }

    pub fn write_i32(&self, data: &[i32]) -> Result<(), GgmlError> {
        self.write_plain(data, Type::I32)
    }

    /// f16 values given as their IEEE half bit patterns.
    pub fn write_f16_bits(&self, data: &[u16]) -> Result<(), GgmlError> {
        self.write_plain(data, Type::F16)
    }

    pub fn write_i64(&self, data: &[i64]) -> Result<(), GgmlError> {
        self.write_plain(data, Type::I64)
    }

    fn write_plain<T: Copy>(&self, data: &[T], want: Type) -> Result<(), GgmlError> {
        if self.ty() != want {
            return Err(GgmlError::Tensor {
                name: self.name(),
                msg: format!("is {}, not {want}", self.ty()),
            });
        }
        let len = std::mem::size_of_val(data);
        self.check_io(0, len)?;
        // SAFETY: allocated tensor of the element type T (checked), `len` bytes fit (checked),
        // `data` is a valid readable slice of plain-old-data values.
        unsafe { sys::ggml_backend_tensor_set(self.as_ptr(), data.as_ptr().cast(), 0, len) };
        Ok(())
    }

    /// Copy raw bytes out of the tensor's data, starting at byte `offset`.
    pub fn read_bytes(&self, offset: usize, out: &mut [u8]) -> Result<(), GgmlError> {
        self.check_io(offset, out.len())?;
        // SAFETY: allocated tensor, [offset, offset+len) inside its data (checked); `out` is a
        // valid writable byte slice.
        unsafe {
            sys::ggml_backend_tensor_get(self.as_ptr(), out.as_mut_ptr().cast(), offset, out.len())
        };
        Ok(())
    }

    /// Read f32 values starting at element `first` into `out`.
    pub fn read_f32(&self, first: usize, out: &mut [f32]) -> Result<(), GgmlError> {
        if self.ty() != Type::F32 {
            return Err(GgmlError::Tensor {
                name: self.name(),
                msg: format!("is {}, not f32", self.ty()),
            });
        }
        let offset = first * 4;
        let len = std::mem::size_of_val(out);
        self.check_io(offset, len)?;
        // SAFETY: allocated f32 tensor, [offset, offset+len) inside its data (checked); `out`
        // is a valid writable slice of f32, for which every bit pattern is valid.
        unsafe {
            sys::ggml_backend_tensor_get(self.as_ptr(), out.as_mut_ptr().cast(), offset, len)
        };
        Ok(())
    }
}

/// A computation graph allocated in a [`Context`].
pub struct Graph<'ctx> {
    raw: NonNull<sys::ggml_cgraph>,
    _ctx: PhantomData<&'ctx Context>,
}

impl Graph<'_> {
    pub(super) fn as_ptr(&self) -> *mut sys::ggml_cgraph {
        self.raw.as_ptr()
    }

    /// Add `t` and everything it depends on.
    pub fn expand(&mut self, t: Tensor<'_>) {
        // SAFETY: both graph and tensor are live; ggml aborts if the graph is full.
        unsafe { sys::ggml_build_forward_expand(self.as_ptr(), t.as_ptr()) }
    }

    pub fn n_nodes(&self) -> usize {
        // SAFETY: live graph.
        unsafe { sys::ggml_graph_n_nodes(self.as_ptr()) as usize }
    }

    /// The graph's nodes, in order (raw: for the backend layer's walks over a built graph).
    pub(super) fn node_ptrs(&self) -> impl Iterator<Item = *mut sys::ggml_tensor> + '_ {
        // SAFETY: live graph; every index is below its node count.
        (0..self.n_nodes() as i32).map(|i| unsafe { sys::ggml_graph_node(self.as_ptr(), i) })
    }
}

/// Graph operations. Each returns a new tensor header in `self` (the graph's context); inputs
/// may live in other contexts that outlive it (weights, KV cache).
impl Context {
    pub(super) fn op<'a>(
        &'a self,
        f: impl FnOnce(*mut sys::ggml_context) -> *mut sys::ggml_tensor,
    ) -> Tensor<'a> {
        self.wrap(f(self.as_ptr()))
    }

    pub fn add<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>) -> Tensor<'a> {
        // SAFETY (all ops below): live context and live tensor headers; ggml validates shapes
        // with GGML_ASSERT (abort), never reading out of bounds at graph-build time.
        self.op(|c| unsafe { sys::ggml_add(c, a.as_ptr(), b.as_ptr()) })
    }

    pub fn mul<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>) -> Tensor<'a> {
        // SAFETY: see `add`.
        self.op(|c| unsafe { sys::ggml_mul(c, a.as_ptr(), b.as_ptr()) })
    }

    pub fn scale<'a>(&'a self, a: Tensor<'a>, s: f32) -> Tensor<'a> {
        // SAFETY: see `add`.
        self.op(|c| unsafe { sys::ggml_scale(c, a.as_ptr(), s) })
    }

    /// `a` [k, m] × `b` [k, n] → [m, n] (ggml's convention: rows of `a` dotted with columns of `b`).
    pub fn mul_mat<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>) -> Tensor<'a> {
        // SAFETY: see `add`.
        self.op(|c| unsafe { sys::ggml_mul_mat(c, a.as_ptr(), b.as_ptr()) })
    }

    /// Ask for f32 accumulation (matmul, flash attention).
    pub fn set_prec_f32(&self, t: Tensor<'_>) {
        // SAFETY: writes an op parameter of a live tensor.
        unsafe { sys::ggml_prec_set_acc(t.as_ptr(), sys::GGML_PREC_F32) };
    }

    /// `rot · x` over consecutive blocks of `rot.ne[0]` values of `x` (any shape, its first
    /// dimension a multiple of the block): `rot` is an orthonormal Walsh-Hadamard matrix, which
    /// ggml's CPU backend applies as a fast transform. The result has `x`'s shape.
    pub fn mul_mat_hadamard<'a>(&'a self, x: Tensor<'a>, rot: Tensor<'a>) -> Tensor<'a> {
        let n = rot.ne()[0];
        let ne = x.ne();
        let total = x.n_elements();
        let x2 = if x.is_contiguous() {
            self.reshape(x, &[n, total / n])
        } else {
            let c = self.cont(x);
            self.reshape(c, &[n, total / n])
        };
        let r = self.mul_mat(rot, x2);
        // SAFETY: writes an op parameter of the live MUL_MAT tensor just made.
        unsafe { sys::ggml_mul_mat_set_hint(r.as_ptr(), sys::GGML_HINT_SRC0_IS_HADAMARD) };
        self.reshape(r, &ne)
    }

    pub fn rms_norm<'a>(&'a self, a: Tensor<'a>, eps: f32) -> Tensor<'a> {
        // SAFETY: see `add`.
        self.op(|c| unsafe { sys::ggml_rms_norm(c, a.as_ptr(), eps) })
    }

    pub fn silu<'a>(&'a self, a: Tensor<'a>) -> Tensor<'a> {
        // SAFETY: see `add`.
        self.op(|c| unsafe { sys::ggml_silu(c, a.as_ptr()) })
    }

    pub fn gelu<'a>(&'a self, a: Tensor<'a>) -> Tensor<'a> {
        // SAFETY: see `add`.
        self.op(|c| unsafe { sys::ggml_gelu(c, a.as_ptr()) })
    }

    pub fn tanh<'a>(&'a self, a: Tensor<'a>) -> Tensor<'a> {
        // SAFETY: see `add`.
        self.op(|c| unsafe { sys::ggml_tanh(c, a.as_ptr()) })
    }

    /// silu of the first half of each row of `a` times its second half (a fused gate and up).
    pub fn swiglu<'a>(&'a self, a: Tensor<'a>) -> Tensor<'a> {
        // SAFETY: see `add`.
        self.op(|c| unsafe { sys::ggml_swiglu(c, a.as_ptr()) })
    }

    /// silu(a) * b, fused.
    pub fn swiglu_split<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>) -> Tensor<'a> {
        // SAFETY: see `add`.
        self.op(|c| unsafe { sys::ggml_swiglu_split(c, a.as_ptr(), b.as_ptr()) })
    }

    /// gelu(a) * b, fused.
    pub fn geglu_split<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>) -> Tensor<'a> {
        // SAFETY: see `add`.
        self.op(|c| unsafe { sys::ggml_geglu_split(c, a.as_ptr(), b.as_ptr()) })
    }

    pub fn cast<'a>(&'a self, a: Tensor<'a>, ty: Type) -> Tensor<'a> {
        // SAFETY: see `add`.
        self.op(|c| unsafe { sys::ggml_cast(c, a.as_ptr(), ty.raw()) })
    }

    /// `a` and `b` one after the other along dimension `dim` (their other sizes equal).
    pub fn concat<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>, dim: i32) -> Tensor<'a> {
        // SAFETY: see `add` (ggml asserts the types match and the other dimensions agree).
        self.op(|c| unsafe { sys::ggml_concat(c, a.as_ptr(), b.as_ptr(), dim) })
    }

    pub fn cont<'a>(&'a self, a: Tensor<'a>) -> Tensor<'a> {
        // SAFETY: see `add`.
        self.op(|c| unsafe { sys::ggml_cont(c, a.as_ptr()) })
    }

    pub fn reshape<'a>(&'a self, a: Tensor<'a>, ne: &[i64]) -> Tensor<'a> {
        let p = a.as_ptr();
        // SAFETY: see `add` (ggml asserts the element counts agree and `a` is contiguous).
        self.op(|c| unsafe {
            match *ne {
                [x, y] => sys::ggml_reshape_2d(c, p, x, y),
                [x, y, z] => sys::ggml_reshape_3d(c, p, x, y, z),
                [x, y, z, w] => sys::ggml_reshape_4d(c, p, x, y, z, w),
                _ => panic!("reshape to 2 to 4 dimensions, got {}", ne.len()),
            }
        })
    }

    /// A view of `a` with sizes `ne`, byte strides `nb` (one fewer than `ne`) and byte `offset`.
    pub fn view<'a>(
        &'a self,
        a: Tensor<'a>,
        ne: &[i64],
        nb: &[usize],
        offset: usize,
    ) -> Tensor<'a> {
        let p = a.as_ptr();
        // SAFETY: see `add`; ggml asserts that the view lies inside the viewed tensor.
        self.op(|c| unsafe {
            match (ne, nb) {
                ([x], []) => sys::ggml_view_1d(c, p, *x, offset),
                ([x, y], [n1]) => sys::ggml_view_2d(c, p, *x, *y, *n1, offset),
                ([x, y, z], [n1, n2]) => sys::ggml_view_3d(c, p, *x, *y, *z, *n1, *n2, offset),
                ([x, y, z, w], [n1, n2, n3]) => {
                    sys::ggml_view_4d(c, p, *x, *y, *z, *w, *n1, *n2, *n3, offset)
                }
                _ => panic!(
                    "view: {} sizes need {} strides",
                    ne.len(),
                    ne.len().saturating_sub(1)
                ),
            }
        })
    }

    pub fn permute<'a>(&'a self, a: Tensor<'a>, axes: [i32; 4]) -> Tensor<'a> {
        // SAFETY: see `add` (ggml asserts the axes are a permutation).
        self.op(|c| unsafe { sys::ggml_permute(c, a.as_ptr(), axes[0], axes[1], axes[2], axes[3]) })
    }

    pub fn transpose<'a>(&'a self, a: Tensor<'a>) -> Tensor<'a> {
        // SAFETY: see `add`.
        self.op(|c| unsafe { sys::ggml_transpose(c, a.as_ptr()) })
    }

    /// Rows of `a` picked by the i32 indices in `idx`.
    pub fn get_rows<'a>(&'a self, a: Tensor<'a>, idx: Tensor<'a>) -> Tensor<'a> {
        // SAFETY: see `add`.
        self.op(|c| unsafe { sys::ggml_get_rows(c, a.as_ptr(), idx.as_ptr()) })
    }

    /// Store the rows of `src` into `dst` at the row indices `idx` (i64), converting the type.
    pub fn set_rows<'a>(&'a self, dst: Tensor<'a>, src: Tensor<'a>, idx: Tensor<'a>) -> Tensor<'a> {
        // SAFETY: see `add`; indices are bounds-checked by the caller (KV cache bookkeeping).
        self.op(|c| unsafe { sys::ggml_set_rows(c, dst.as_ptr(), src.as_ptr(), idx.as_ptr()) })
    }

    pub fn soft_max_ext<'a>(
        &'a self,
        a: Tensor<'a>,
        mask: Option<Tensor<'a>>,
        scale: f32,
    ) -> Tensor<'a> {
        let m = mask.map_or(std::ptr::null_mut(), |m| m.as_ptr());
        // SAFETY: see `add`; a null mask is allowed by ggml.
        self.op(|c| unsafe { sys::ggml_soft_max_ext(c, a.as_ptr(), m, scale, 0.0) })
    }

    /// Attention sinks on a `soft_max_ext` node: one learned logit per head (`sinks`, f32
    /// [n_head]) joins each row's softmax denominator, taking a share of the attention that
    /// goes to no cell.
    pub fn soft_max_add_sinks(&self, softmax: Tensor<'_>, sinks: Tensor<'_>) {
        // SAFETY: sets a source of a live node; ggml asserts the op, the sinks' type and count.
        unsafe { sys::ggml_soft_max_add_sinks(softmax.as_ptr(), sinks.as_ptr()) }
    }

    /// [`soft_max_add_sinks`](Self::soft_max_add_sinks) on a `flash_attn_ext` node.
    pub fn flash_attn_add_sinks(&self, fa: Tensor<'_>, sinks: Tensor<'_>) {
        // SAFETY: as `soft_max_add_sinks`.
        unsafe { sys::ggml_flash_attn_ext_add_sinks(fa.as_ptr(), sinks.as_ptr()) }
    }

    /// Rotary embedding over the first `n_dims` of each head; `pos` holds i32 positions.
    #[allow(clippy::too_many_arguments)]
    pub fn rope_ext<'a>(
        &'a self,
        a: Tensor<'a>,
        pos: Tensor<'a>,
        freq_factors: Option<Tensor<'a>>,
        n_dims: i32,
        mode: i32,
        n_ctx_orig: i32,
        freq_base: f32,
        freq_scale: f32,
        ext_factor: f32,
        attn_factor: f32,
        beta_fast: f32,
        beta_slow: f32,
    ) -> Tensor<'a> {
        let ff = freq_factors.map_or(std::ptr::null_mut(), |t| t.as_ptr());
        // SAFETY: see `add`; null frequency factors are allowed by ggml.
        self.op(|c| unsafe {
            sys::ggml_rope_ext(
                c,
                a.as_ptr(),
                pos.as_ptr(),
                ff,
                n_dims,
                mode,
                n_ctx_orig,
                freq_base,
                freq_scale,
                ext_factor,
                attn_factor,
                beta_fast,
                beta_slow,
            )
        })
    }

    /// Fused attention: softmax(q·kᵀ·scale + mask)·v, f32 accumulation.
    pub fn flash_attn_ext<'a>(
        &'a self,
        q: Tensor<'a>,
        k: Tensor<'a>,
        v: Tensor<'a>,
        mask: Option<Tensor<'a>>,
        scale: f32,
        softcap: f32,
    ) -> Tensor<'a> {
        let m = mask.map_or(std::ptr::null_mut(), |m| m.as_ptr());
        // SAFETY: see `add`.
        let t = self.op(|c| unsafe {
            sys::ggml_flash_attn_ext(
                c,
                q.as_ptr(),
                k.as_ptr(),
                v.as_ptr(),
                m,
                scale,
                0.0,
                softcap,
            )
        });
        self.set_prec_f32(t);
        t
    }
}
