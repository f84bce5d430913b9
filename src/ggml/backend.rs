//! Backends, buffer types, buffers and the graph scheduler.

use std::ffi::{CStr, CString};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use super::context::{Context, Graph, Tensor, TensorHandle};
use super::device::{Device, DeviceKind};
use super::{GgmlError, Type};
use ggml_sys as sys;

fn c_str(p: *const std::ffi::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: ggml returns NUL-terminated strings owned by the object (or static).
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// A compute backend: the CPU, or a GPU device's.
pub struct Backend {
    raw: NonNull<sys::ggml_backend>,
    is_cpu: bool,
}

// SAFETY: a ggml backend may be used from any thread as long as calls are not concurrent, which
// `&mut`/ownership through `Sched` and `Backend` methods ensures.
unsafe impl Send for Backend {}

impl Backend {
    pub fn cpu(n_threads: usize) -> Result<Backend, GgmlError> {
        // SAFETY: plain constructor; returns null on failure.
        let raw = unsafe { sys::ggml_backend_cpu_init() };
        let raw = NonNull::new(raw).ok_or_else(|| GgmlError::BackendInit("CPU".into()))?;
        let b = Backend { raw, is_cpu: true };
        b.set_threads(n_threads);
        Ok(b)
    }

    /// The backend of a (GPU) device.
    pub fn for_device(dev: &Device) -> Result<Backend, GgmlError> {
        // SAFETY: live static device; null params = defaults; returns null on failure.
        let raw = unsafe { sys::ggml_backend_dev_init(dev.raw.as_ptr(), std::ptr::null()) };
        let raw = NonNull::new(raw).ok_or_else(|| GgmlError::BackendInit(dev.name()))?;
        Ok(Backend {
            raw,
            is_cpu: dev.kind() == DeviceKind::Cpu,
        })
    }

    /// Threads of a CPU backend (other backends ignore it).
    pub fn set_threads(&self, n: usize) {
        if !self.is_cpu {
            return;
        }
        // SAFETY: live CPU backend (checked above).
        unsafe { sys::ggml_backend_cpu_set_n_threads(self.raw.as_ptr(), n.max(1) as i32) }
    }

    pub fn name(&self) -> String {
        // SAFETY: live backend.
        c_str(unsafe { sys::ggml_backend_name(self.raw.as_ptr()) })
    }

    /// Run a graph whose tensors are all allocated (used by tests and simple paths).
    pub fn compute(&self, g: &Graph<'_>) -> Result<(), GgmlError> {
        // SAFETY: live backend and graph; ggml requires allocated tensors, which the caller ensures
        // through `Context::alloc_tensors` or the scheduler.
        let st = unsafe { sys::ggml_backend_graph_compute(self.raw.as_ptr(), g.as_ptr()) };
        if st != sys::GGML_STATUS_SUCCESS {
            return Err(GgmlError::Compute(st));
        }
        Ok(())
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        // SAFETY: we own the backend.
        unsafe { sys::ggml_backend_free(self.raw.as_ptr()) }
    }
}

/// A backend buffer type (static objects in ggml: never freed).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BufferType {
    pub(super) raw: NonNull<sys::ggml_backend_buffer_type>,
}

// SAFETY: buffer types are immutable static descriptors in ggml.
unsafe impl Send for BufferType {}
// SAFETY: as above.
unsafe impl Sync for BufferType {}

impl BufferType {
    /// Plain host memory for the CPU backend.
    pub fn cpu() -> BufferType {
        // SAFETY: returns a pointer to a static descriptor.
        let raw = unsafe { sys::ggml_backend_cpu_buffer_type() };
        BufferType {
            raw: NonNull::new(raw).expect("CPU buffer type"),
        }
    }

    /// The CPU backend's extra buffer types (weight repacking, AMX, ...).
    pub fn cpu_extra() -> Vec<BufferType> {
        let name = CString::new("ggml_backend_dev_get_extra_bufts").unwrap();
        // SAFETY: the CPU registry is static; `reg_dev_get(reg, 0)` is its one device; the proc
        // address, if present, has the documented `ggml_backend_dev_get_extra_bufts_t` signature
        // and returns a NULL-terminated array of static buffer types.
        unsafe {
            let reg = sys::ggml_backend_cpu_reg();
            let dev = sys::ggml_backend_reg_dev_get(reg, 0);
            let f = sys::ggml_backend_reg_get_proc_address(reg, name.as_ptr());
            if f.is_null() || dev.is_null() {
                return Vec::new();
            }
            let f: sys::ggml_backend_dev_get_extra_bufts_t = std::mem::transmute(f);
            let mut out = Vec::new();
            if let Some(f) = f {
                let mut p = f(dev);
                while !p.is_null() && !(*p).is_null() {
                    out.push(BufferType {
                        raw: NonNull::new_unchecked(*p),
                    });
                    p = p.add(1);
                }
            }
            out
        }
    }

    /// The CPU weight-repacking buffer type, if this ggml build has one.
    pub fn cpu_repack() -> Option<BufferType> {
        Self::cpu_extra()
            .into_iter()
            .find(|b| b.name() == "CPU_REPACK")
    }

    pub fn name(&self) -> String {
        // SAFETY: static descriptor.
        c_str(unsafe { sys::ggml_backend_buft_name(self.raw.as_ptr()) })
    }

    /// Whether the memory is host memory (the CPU can read it in place).
    pub fn is_host(&self) -> bool {
        // SAFETY: static descriptor.
        unsafe { sys::ggml_backend_buft_is_host(self.raw.as_ptr()) }
    }

    /// Would the CPU device run `W × x` (x: f32 [ne0, 512]) with a `W` of type `ty` and shape
    /// [ne0, ne1] stored in this buffer type? This asks ggml itself, the way llama.cpp decides
    /// which weights to repack.
    pub fn cpu_supports_mul_mat(&self, ty: Type, ne0: i64, ne1: i64) -> bool {
        let Ok(ctx) = Context::new(4, 0) else {
            return false;
        };
        let w = ctx.new_tensor(ty, &[ne0, ne1]);
        let x = ctx.new_tensor(Type::F32, &[ne0, 512]);
        let op = ctx.mul_mat(w, x);
        self.cpu_supports(w, op)
    }

    /// Whether the CPU backend runs the per-expert product of experts `[ne0, ne1, ne2]` of
    /// type `ty` stored in this buffer type, `n_used` per token, for a batch of 512 tokens
    /// (the question llama.cpp asks to place expert weights).
    pub fn cpu_supports_mul_mat_id(&self, ty: Type, ne: [i64; 3], n_used: i64) -> bool {
        let Ok(ctx) = Context::new(4, 0) else {
            return false;
        };
        let w = ctx.new_tensor(ty, &ne);
        let x = ctx.new_tensor(Type::F32, &[ne[0], n_used, 512]);
        let ids = ctx.new_tensor(Type::I32, &[n_used, 512]);
        let op = ctx.mul_mat_id(w, x, ids);
        self.cpu_supports(w, op)
    }

    /// Whether the CPU device supports `op` with its weight `w` stored in this buffer type.
    fn cpu_supports(&self, w: Tensor<'_>, op: Tensor<'_>) -> bool {
        // SAFETY: a zero-size buffer of this type is allocated only to mark `w` as stored in it
        // (no data is read or written: supports_op inspects types, shapes and the buffer type);
        // the pointer is cleared before the buffer is freed.
        unsafe {
            let buf = sys::ggml_backend_buft_alloc_buffer(self.raw.as_ptr(), 0);
            if buf.is_null() {
                return false;
            }
            (*w.as_ptr()).buffer = buf;
            let dev = sys::ggml_backend_reg_dev_get(sys::ggml_backend_cpu_reg(), 0);
            let ok = !dev.is_null() && sys::ggml_backend_dev_supports_op(dev, op.as_ptr());
            (*w.as_ptr()).buffer = std::ptr::null_mut();
            sys::ggml_backend_buffer_free(buf);
            ok
        }
    }
}

/// Memory that a buffer can wrap without copying (a read-only file mapping).
pub type HostMemory = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// An owned backend buffer.
pub struct Buffer {
    raw: NonNull<sys::ggml_backend_buffer>,
    /// Memory wrapped by this buffer (kept alive as long as the buffer).
    _host: Option<HostMemory>,
}

// SAFETY: buffers are plain memory owned by this handle.
unsafe impl Send for Buffer {}

impl Buffer {
    pub fn size(&self) -> usize {
        // SAFETY: live buffer.
        unsafe { sys::ggml_backend_buffer_get_size(self.raw.as_ptr()) }
    }

    pub fn name(&self) -> String {
        // SAFETY: live buffer.
        c_str(unsafe { sys::ggml_backend_buffer_name(self.raw.as_ptr()) })
    }

    pub fn clear(&self, value: u8) {
        // SAFETY: live buffer; fills its own memory.
        unsafe { sys::ggml_backend_buffer_clear(self.raw.as_ptr(), value) }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: we own the buffer; the host memory (if any) is dropped after it.
        unsafe { sys::ggml_backend_buffer_free(self.raw.as_ptr()) }
    }
}

/// Buffers that hold the data of a context's tensors. They live inside the [`Context`] so that
/// tensor memory is freed only together with the tensor headers.
#[derive(Default)]
pub(super) struct ContextBuffers {
    pub(super) list: Mutex<Vec<Buffer>>,
}

impl Context {
    /// Allocate every not-yet-allocated tensor of this context in one new buffer of type `buft`.
    /// Returns the bytes allocated (0 when nothing was left to allocate).
    pub fn alloc_tensors(&self, buft: BufferType, weights: bool) -> Result<usize, GgmlError> {
        // SAFETY: live context and static buffer type; the size query has no side effects.
        let need = unsafe {
            sys::ggml_backend_alloc_ctx_tensors_from_buft_size(self.as_ptr(), buft.raw.as_ptr())
        };
        if need == 0 {
            return Ok(0);
        }
        // SAFETY: as above; returns null on failure. The buffer is stored in the context.
        let raw = unsafe {
            sys::ggml_backend_alloc_ctx_tensors_from_buft(self.as_ptr(), buft.raw.as_ptr())
        };
        let raw = NonNull::new(raw).ok_or(GgmlError::BufferAlloc {
            what: buft.name(),
            bytes: need,
        })?;
        if weights {
            // SAFETY: live buffer.
            unsafe {
                sys::ggml_backend_buffer_set_usage(
                    raw.as_ptr(),
                    sys::GGML_BACKEND_BUFFER_USAGE_WEIGHTS,
                )
            };
        }
        let buf = Buffer { raw, _host: None };
        let size = buf.size();
        self.buffers().list.lock().unwrap().push(buf);
        Ok(size)
    }

    /// Allocate the tensors `handles` (of this context, not yet allocated) together in one new
    /// buffer of type `buft`, leaving the context's other tensors alone. Returns the bytes
    /// allocated.
    pub fn alloc_tensors_in(
        &self,
        buft: BufferType,
        handles: &[TensorHandle],
        weights: bool,
    ) -> Result<usize, GgmlError> {
        let tensors: Vec<Tensor<'_>> = handles.iter().map(|&h| self.get(h)).collect();
        if let Some(t) = tensors.iter().find(|t| t.is_allocated()) {
            return Err(GgmlError::Tensor {
                name: t.name(),
                msg: "is already allocated".into(),
            });
        }
        // SAFETY: static buffer type.
        let align = unsafe { sys::ggml_backend_buft_get_alignment(buft.raw.as_ptr()) }.max(1);
        let mut offsets = Vec::with_capacity(tensors.len());
        let mut size = 0usize;
        for t in &tensors {
            // SAFETY: static buffer type and a live tensor header of this context.
            let n = unsafe { sys::ggml_backend_buft_get_alloc_size(buft.raw.as_ptr(), t.as_ptr()) };
            offsets.push(size);
            size += n.div_ceil(align) * align;
        }
        if size == 0 {
            return Ok(0);
        }
        // SAFETY: static buffer type; returns null on failure.
        let raw = unsafe { sys::ggml_backend_buft_alloc_buffer(buft.raw.as_ptr(), size) };
        let raw = NonNull::new(raw).ok_or(GgmlError::BufferAlloc {
            what: buft.name(),
            bytes: size,
        })?;
        let buf = Buffer { raw, _host: None };
        if weights {
            // SAFETY: live buffer.
            unsafe {
                sys::ggml_backend_buffer_set_usage(
                    raw.as_ptr(),
                    sys::GGML_BACKEND_BUFFER_USAGE_WEIGHTS,
                )
            };
        }
        let size = buf.size();
        // Owned by the context before any tensor points into it.
        self.buffers().list.lock().unwrap().push(buf);
        for (t, &off) in tensors.iter().zip(&offsets) {
            // SAFETY: each tensor gets its own aligned range [off, off + alloc size) inside
            // the buffer (the sizes were summed above); base + off stays inside the allocation.
            let st = unsafe {
                let base = sys::ggml_backend_buffer_get_base(raw.as_ptr()) as *mut u8;
                sys::ggml_backend_tensor_alloc(raw.as_ptr(), t.as_ptr(), base.add(off).cast())
            };
            if st != sys::GGML_STATUS_SUCCESS {
                return Err(GgmlError::Tensor {
                    name: t.name(),
                    msg: format!("ggml_backend_tensor_alloc failed ({st})"),
                });
            }
        }
        Ok(size)
    }

    /// Wrap `mem` (kept alive by the context) as a CPU buffer, and return its index for
    /// [`Context::place_in_host`].
    pub fn attach_host_memory(&self, mem: HostMemory) -> Result<usize, GgmlError> {
        let bytes: &[u8] = (*mem).as_ref();
        let (ptr, len) = (bytes.as_ptr(), bytes.len());
        if !(ptr as usize).is_multiple_of(64) {
            return Err(GgmlError::BufferAlloc {
                what: "host (misaligned)".into(),
                bytes: len,
            });
        }
        // SAFETY: `ptr..ptr+len` is valid for as long as `mem` lives, and `mem` is stored next to
        // the buffer (dropped after it). ggml only reads weight buffers.
        let raw = unsafe { sys::ggml_backend_cpu_buffer_from_ptr(ptr as *mut _, len) };
        let raw = NonNull::new(raw).ok_or(GgmlError::BufferAlloc {
            what: "host".into(),
            bytes: len,
        })?;
        // SAFETY: live buffer.
        unsafe {
            sys::ggml_backend_buffer_set_usage(raw.as_ptr(), sys::GGML_BACKEND_BUFFER_USAGE_WEIGHTS)
        };
        let mut list = self.buffers().list.lock().unwrap();
        list.push(Buffer {
            raw,
            _host: Some(mem),
        });
        Ok(list.len() - 1)
    }

    /// Point tensor `t` (of this context) at byte `offset` of attached host memory `region`.
    pub fn place_in_host(
        &self,
        t: Tensor<'_>,
        region: usize,
        offset: usize,
    ) -> Result<(), GgmlError> {
        let list = self.buffers().list.lock().unwrap();
        let buf = list.get(region).ok_or_else(|| GgmlError::Tensor {
            name: t.name(),
            msg: "no such host region".into(),
        })?;
        let size = buf.size();
        let end = offset.checked_add(t.nbytes());
        if end.is_none_or(|e| e > size) || t.is_allocated() {
            return Err(GgmlError::Tensor {
                name: t.name(),
                msg: format!("cannot place at offset {offset} of {size} bytes"),
            });
        }
        // SAFETY: the tensor's bytes [offset, offset+nbytes) lie inside the buffer (checked) and
        // the tensor is not yet allocated; base + offset stays inside the same allocation.
        let st = unsafe {
            let base = sys::ggml_backend_buffer_get_base(buf.raw.as_ptr()) as *mut u8;
            sys::ggml_backend_tensor_alloc(buf.raw.as_ptr(), t.as_ptr(), base.add(offset).cast())
        };
        if st != sys::GGML_STATUS_SUCCESS {
            return Err(GgmlError::Tensor {
                name: t.name(),
                msg: format!("ggml_backend_tensor_alloc failed ({st})"),
            });
        }
        Ok(())
    }

    /// Total bytes of the buffers owned by this context, by buffer name.
    pub fn buffer_sizes(&self) -> Vec<(String, usize)> {
        self.buffers()
            .list
            .lock()
            .unwrap()
            .iter()
            .map(|b| (b.name(), b.size()))
            .collect()
    }

    /// Fill every buffer of this context with `value` (e.g. zero a fresh KV cache).
    pub fn clear_buffers(&self, value: u8) {
        for b in self.buffers().list.lock().unwrap().iter() {
            b.clear(value);
        }
    }
}

/// What a [`NodeObserver`] sees of one computed graph node.
pub struct NodeInfo<'a> {
    pub name: &'a str,
    pub op: &'a str,
    pub ne: [i64; 4],
    /// Sum of the values (f32 and f16 nodes in host memory; `None` otherwise).
    pub sum: Option<f64>,
    /// The first and last three values of the first and last three rows (as
    /// llama-eval-callback shows them).
    pub rows: Vec<[f32; 6]>,
}

/// Called after every node of a graph is computed (a debugging aid: it makes computing slow).
pub type NodeObserver = Box<dyn FnMut(&NodeInfo<'_>)>;

/// ggml's backend scheduler: allocates a graph's intermediate tensors and runs it.
pub struct Sched {
    raw: NonNull<sys::ggml_backend_sched>,
    /// The observer ggml calls back, as a raw pointer from `Box::into_raw` (so moving the
    /// scheduler never invalidates it); freed after ggml stops using it.
    observer: Option<NonNull<NodeObserver>>,
    /// The CPU backend (the last), when there are others: Ember's custom ops are pinned to it.
    cpu: Option<NonNull<sys::ggml_backend>>,
}

/// The eval callback ggml calls: `ask` = "do you want to see this node?" (yes, all of them),
/// then once more after computing it.
unsafe extern "C" fn observe_node(
    t: *mut sys::ggml_tensor,
    ask: bool,
    user_data: *mut std::ffi::c_void,
) -> bool {
    if ask {
        return true;
    }
    // SAFETY: ggml passes a live, computed tensor and the user data we registered, which is
    // a `Box<NodeObserver>` owned by the scheduler for as long as the callback is set.
    let (t, f) = unsafe { (&*t, &mut *(user_data as *mut NodeObserver)) };
    // SAFETY: name is a NUL-terminated array inside the tensor; ggml_op_desc returns a static
    // string.
    let name = unsafe { CStr::from_ptr(t.name.as_ptr()) }.to_string_lossy();
    let op = unsafe { CStr::from_ptr(sys::ggml_op_desc(t)) }.to_string_lossy();
    let (sum, rows) = host_values(t).unzip();
    f(&NodeInfo {
        name: &name,
        op: &op,
        ne: t.ne,
        sum,
        rows: rows.unwrap_or_default(),
    });
    true
}

/// Sum of a host tensor's f32 or f16 values, following its strides, and the edges of its
/// first rows.
fn host_values(t: &sys::ggml_tensor) -> Option<(f64, Vec<[f32; 6]>)> {
    let (is_f32, is_f16) = (t.type_ == sys::GGML_TYPE_F32, t.type_ == sys::GGML_TYPE_F16);
    if t.data.is_null() || !(is_f32 || is_f16) {
        return None;
    }
    // SAFETY: a tensor with a buffer is host memory on the CPU backend (the only one observers
    // are used with); buffer null-checked.
    if t.buffer.is_null() || !unsafe { sys::ggml_backend_buffer_is_host(t.buffer) } {
        return None;
    }
    let mut sum = 0.0f64;
    let mut rows = Vec::new();
    let n0 = t.ne[0];
    for i3 in 0..t.ne[3] {
        for i2 in 0..t.ne[2] {
            for i1 in 0..t.ne[1] {
                for i0 in 0..t.ne[0] {
                    let off = i0 as usize * t.nb[0]
                        + i1 as usize * t.nb[1]
                        + i2 as usize * t.nb[2]
                        + i3 as usize * t.nb[3];
                    // SAFETY: the offset is within the tensor's extent as described by ne/nb,
                    // which ggml keeps inside its buffer; unaligned reads are used.
                    let v = unsafe {
                        let p = (t.data as *const u8).add(off);
                        if is_f32 {
                            (p as *const f32).read_unaligned()
                        } else {
                            f16_to_f32((p as *const u16).read_unaligned())
                        }
                    };
                    sum += v as f64;
                    if i3 == 0 && i2 == 0 && (i1 < 3 || i1 >= t.ne[1] - 3) {
                        if i0 == 0 {
                            rows.push([f32::NAN; 6]);
                        }
                        let row = rows.last_mut().expect("pushed at i0 = 0");
                        if i0 < 3 {
                            row[i0 as usize] = v;
                        }
                        if i0 >= n0 - 3 && i0 >= 3 {
                            row[(i0 - (n0 - 3) + 3) as usize] = v;
                        }
                    }
                }
            }
        }
    }
    Some((sum, rows))
}

fn f16_to_f32(h: u16) -> f32 {
    // SAFETY: pure conversion function.
    unsafe { sys::ggml_fp16_to_fp32(h) }
}

impl Sched {
    /// A scheduler over `backends` (the CPU last) for graphs of up to `graph_size` nodes. With
    /// a GPU among them, large batches may run their matrix products on the GPU even where the
    /// weights are in host memory ("op offload", as llama.cpp does).
    pub fn new(backends: &[&Backend], graph_size: usize) -> Result<Sched, GgmlError> {
        let mut raw_backends: Vec<sys::ggml_backend_t> =
            backends.iter().map(|b| b.raw.as_ptr()).collect();
        // SAFETY: the backends are live and outlive the scheduler (callers keep them in the same
        // owning struct, declared after the scheduler so it drops first); null bufts = defaults.
        let raw = unsafe {
            sys::ggml_backend_sched_new(
                raw_backends.as_mut_ptr(),
                std::ptr::null_mut(),
                raw_backends.len() as i32,
                graph_size,
                false,
                raw_backends.len() > 1,
            )
        };
        NonNull::new(raw)
            .map(|raw| Sched {
                raw,
                observer: None,
                cpu: backends
                    .last()
                    .filter(|_| backends.len() > 1)
                    .map(|b| b.raw),
            })
            .ok_or_else(|| GgmlError::BackendInit("scheduler".into()))
    }

    /// Pre-allocate compute buffers for a worst-case graph.
    pub fn reserve(&mut self, g: &Graph<'_>) -> Result<(), GgmlError> {
        self.pin_custom_ops(g);
        // SAFETY: live scheduler and graph.
        if unsafe { sys::ggml_backend_sched_reserve(self.raw.as_ptr(), g.as_ptr()) } {
            Ok(())
        } else {
            Err(GgmlError::GraphAlloc)
        }
    }

    /// Allocate the graph's tensors; input tensors can be written afterwards.
    pub fn alloc_graph(&mut self, g: &Graph<'_>) -> Result<(), GgmlError> {
        // SAFETY: live scheduler and graph; reset first as ggml requires between graphs.
        let ok = unsafe {
            sys::ggml_backend_sched_reset(self.raw.as_ptr());
            self.pin_custom_ops(g);
            sys::ggml_backend_sched_alloc_graph(self.raw.as_ptr(), g.as_ptr())
        };
        if ok {
            Ok(())
        } else {
            Err(GgmlError::GraphAlloc)
        }
    }

    /// Run an allocated graph. Output tensors stay readable until the next `alloc_graph`.
    pub fn compute(&mut self, g: &Graph<'_>) -> Result<(), GgmlError> {
        // SAFETY: live scheduler; graph allocated by `alloc_graph` on this scheduler.
        let st = unsafe { sys::ggml_backend_sched_graph_compute(self.raw.as_ptr(), g.as_ptr()) };
        if st != sys::GGML_STATUS_SUCCESS {
            return Err(GgmlError::Compute(st));
        }
        Ok(())
    }

    /// Observe every computed node from now on (`None` stops observing).
    pub fn set_observer(&mut self, observer: Option<NodeObserver>) {
        let new = observer.map(|o| NonNull::from(Box::leak(Box::new(o))));
        let (cb, ud): (
            Option<unsafe extern "C" fn(_, _, _) -> _>,
            *mut std::ffi::c_void,
        ) = match new {
            Some(p) => (Some(observe_node), p.as_ptr() as *mut std::ffi::c_void),
            None => (None, std::ptr::null_mut()),
        };
        // SAFETY: live scheduler; `ud` is a leaked box that stays valid until we free it after
        // ggml has been given another callback (below) or the scheduler is gone (Drop).
        unsafe { sys::ggml_backend_sched_set_eval_callback(self.raw.as_ptr(), cb, ud) };
        let old = std::mem::replace(&mut self.observer, new);
        free_observer(old);
    }

    /// Ember's custom ops (its CPU kernels) run on the CPU, whatever the scheduler would
    /// choose: their code is a function pointer in this process, and an op of a product may
    /// not name its weight among its sources (so nothing ties it to the weight's backend).
    /// Sent to a remote ggml-rpc server, such a node would crash it.
    fn pin_custom_ops(&self, g: &Graph<'_>) {
        let Some(cpu) = self.cpu else { return };
        for node in g.node_ptrs() {
            // SAFETY: live scheduler, graph node and backend; the scheduler was just reset,
            // and pinning a node to one of its own backends is what `set_tensor_backend` is for.
            unsafe {
                if matches!((*node).op, sys::GGML_OP_MAP_CUSTOM1..=sys::GGML_OP_CUSTOM) {
                    sys::ggml_backend_sched_set_tensor_backend(
                        self.raw.as_ptr(),
                        node,
                        cpu.as_ptr(),
                    );
                }
            }
        }
    }

    /// For the graph last allocated: how many pieces the scheduler cut it into (one per run
    /// of nodes on the same backend), and the bytes it copies from one backend to another to
    /// evaluate it once. The scheduler replaces each source that lives on another backend by
    /// an input copy named "BACKEND#name#copy"; those copies are what crosses.
    pub fn transfers(&self, g: &Graph<'_>) -> (usize, u64) {
        let mut seen = std::collections::HashSet::new();
        let mut bytes = 0u64;
        for node in g.node_ptrs() {
            // SAFETY: the graph was allocated on this scheduler, so every node and source
            // pointer is live and their names are NUL-terminated arrays.
            unsafe {
                for &src in &(*node).src {
                    if src.is_null() || !seen.insert(src as usize) {
                        continue;
                    }
                    let name = std::ffi::CStr::from_ptr((*src).name.as_ptr());
                    if name.to_bytes().contains(&b'#') {
                        bytes += sys::ggml_nbytes(src) as u64;
                    }
                }
            }
        }
        // SAFETY: live scheduler.
        let splits = unsafe { sys::ggml_backend_sched_get_n_splits(self.raw.as_ptr()) };
        (splits.max(0) as usize, bytes)
    }

    /// Bytes of compute buffer held for `backend`.
    pub fn buffer_size(&self, backend: &Backend) -> usize {
        // SAFETY: live scheduler and backend.
        unsafe { sys::ggml_backend_sched_get_buffer_size(self.raw.as_ptr(), backend.raw.as_ptr()) }
    }
}

impl Drop for Sched {
    fn drop(&mut self) {
        // SAFETY: we own the scheduler.
        unsafe { sys::ggml_backend_sched_free(self.raw.as_ptr()) }
        free_observer(self.observer.take());
    }
}

/// Free an observer ggml no longer refers to.
fn free_observer(o: Option<NonNull<NodeObserver>>) {
    if let Some(p) = o {
        // SAFETY: `p` came from `Box::leak` in `set_observer` and is freed exactly once, after
        // ggml was told to stop calling it.
        drop(unsafe { Box::from_raw(p.as_ptr()) });
    }
}
