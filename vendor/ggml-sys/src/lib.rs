//! Raw, hand-written declarations of the part of ggml's C API that Ember uses.
//!
//! Layouts and enum values here are checked against ggml's headers at build time by
//! `abi_check.c` (`_Static_assert`s): an upstream change fails the build instead of corrupting
//! memory. Everything is `unsafe` to call; the safe layer lives in `ember::ggml`.
#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_void};

/// CPU flags ggml was compiled with ("native" or "avx2-baseline").
pub const CPU_FLAGS: &str = env!("GGML_SYS_CPU_FLAGS");
/// ggml version of the compiled tree.
pub const GGML_VERSION: &str = env!("GGML_SYS_VERSION");
/// Backends compiled in, comma-separated ("cpu", "cpu,cuda", "cpu,metal").
pub const BACKENDS: &str = env!("GGML_SYS_BACKENDS");
/// Whether the compiler that built ggml's C++ fuses `a * b + c` written with separate vector
/// intrinsics into one fused multiply-add (GCC in GNU mode does; clang does not).
pub const CXX_FUSES_MUL_ADD: bool = matches!(env!("GGML_SYS_CXX_FUSES").as_bytes(), b"1");

pub const GGML_MAX_DIMS: usize = 4;
pub const GGML_MAX_SRC: usize = 10;
pub const GGML_MAX_OP_PARAMS: usize = 64;
pub const GGML_MAX_NAME: usize = 64;
/// `n_tasks` of a custom op: as many as the backend has threads.
pub const GGML_N_TASKS_MAX: c_int = -1;

/// A custom op's body, called once per thread (`ith` of `nth`) with the op's result tensor.
pub type ggml_custom_op_t = Option<
    unsafe extern "C" fn(dst: *mut ggml_tensor, ith: c_int, nth: c_int, userdata: *mut c_void),
>;

pub type ggml_type = c_int;
pub const GGML_TYPE_F32: ggml_type = 0;
pub const GGML_TYPE_F16: ggml_type = 1;
pub const GGML_TYPE_Q4_0: ggml_type = 2;
pub const GGML_TYPE_Q4_1: ggml_type = 3;
pub const GGML_TYPE_Q5_0: ggml_type = 6;
pub const GGML_TYPE_Q5_1: ggml_type = 7;
pub const GGML_TYPE_Q8_0: ggml_type = 8;
pub const GGML_TYPE_Q4_K: ggml_type = 12;
pub const GGML_TYPE_Q6_K: ggml_type = 14;
pub const GGML_TYPE_IQ4_NL: ggml_type = 20;
pub const GGML_TYPE_I8: ggml_type = 24;
pub const GGML_TYPE_I32: ggml_type = 26;
pub const GGML_TYPE_I64: ggml_type = 27;
pub const GGML_TYPE_BF16: ggml_type = 30;
pub const GGML_TYPE_COUNT: ggml_type = 43;

pub type ggml_op = c_int;
pub const GGML_OP_MAP_CUSTOM1: ggml_op = 92;
pub const GGML_OP_CUSTOM: ggml_op = 95;
pub const GGML_OP_COUNT: ggml_op = 101;

pub type ggml_prec = c_int;
pub const GGML_PREC_F32: ggml_prec = 10;
pub type ggml_op_hint = c_int;
/// `src0` of a MUL_MAT is an orthonormal Walsh-Hadamard matrix: backends may run a fast
/// Walsh-Hadamard transform instead of the product.
pub const GGML_HINT_SRC0_IS_HADAMARD: ggml_op_hint = 1;

pub type ggml_status = c_int;
pub const GGML_STATUS_SUCCESS: ggml_status = 0;

pub type ggml_log_level = c_int;
pub const GGML_LOG_LEVEL_NONE: ggml_log_level = 0;
pub const GGML_LOG_LEVEL_DEBUG: ggml_log_level = 1;
pub const GGML_LOG_LEVEL_INFO: ggml_log_level = 2;
pub const GGML_LOG_LEVEL_WARN: ggml_log_level = 3;
pub const GGML_LOG_LEVEL_ERROR: ggml_log_level = 4;
pub const GGML_LOG_LEVEL_CONT: ggml_log_level = 5;

pub type ggml_backend_buffer_usage = c_int;
pub const GGML_BACKEND_BUFFER_USAGE_WEIGHTS: ggml_backend_buffer_usage = 1;

pub type ggml_backend_dev_type = c_int;
pub const GGML_BACKEND_DEVICE_TYPE_CPU: ggml_backend_dev_type = 0;
pub const GGML_BACKEND_DEVICE_TYPE_GPU: ggml_backend_dev_type = 1;
pub const GGML_BACKEND_DEVICE_TYPE_IGPU: ggml_backend_dev_type = 2;
pub const GGML_BACKEND_DEVICE_TYPE_ACCEL: ggml_backend_dev_type = 3;

pub const GGML_ROPE_TYPE_NORMAL: c_int = 0;
pub const GGML_ROPE_TYPE_NEOX: c_int = 2;
pub const GGML_ROPE_TYPE_IMROPE: c_int = 40;
pub const GGML_MROPE_SECTIONS: usize = 4;

#[repr(C)]
pub struct ggml_init_params {
    pub mem_size: usize,
    pub mem_buffer: *mut c_void,
    pub no_alloc: bool,
}

/// ggml's tensor header (layout asserted in abi_check.c).
#[repr(C)]
pub struct ggml_tensor {
    pub type_: ggml_type,
    pub buffer: *mut ggml_backend_buffer,
    pub ne: [i64; GGML_MAX_DIMS],
    pub nb: [usize; GGML_MAX_DIMS],
    pub op: c_int,
    pub op_params: [i32; GGML_MAX_OP_PARAMS / 4],
    pub flags: i32,
    pub src: [*mut ggml_tensor; GGML_MAX_SRC],
    pub view_src: *mut ggml_tensor,
    pub view_offs: usize,
    pub data: *mut c_void,
    pub name: [c_char; GGML_MAX_NAME],
    pub extra: *mut c_void,
    pub padding: [c_char; 8],
}

macro_rules! opaque {
    ($($name:ident),*) => {$(
        #[repr(C)]
        pub struct $name {
            _private: [u8; 0],
        }
    )*};
}
opaque!(
    ggml_context,
    ggml_cgraph,
    ggml_backend,
    ggml_backend_buffer,
    ggml_backend_buffer_type,
    ggml_backend_device,
    ggml_backend_reg,
    ggml_backend_sched
);

pub type ggml_backend_t = *mut ggml_backend;
pub type ggml_backend_buffer_t = *mut ggml_backend_buffer;
pub type ggml_backend_buffer_type_t = *mut ggml_backend_buffer_type;
pub type ggml_backend_dev_t = *mut ggml_backend_device;
pub type ggml_backend_reg_t = *mut ggml_backend_reg;
pub type ggml_backend_sched_t = *mut ggml_backend_sched;

pub type ggml_log_callback = Option<
    unsafe extern "C" fn(level: ggml_log_level, text: *const c_char, user_data: *mut c_void),
>;
pub type ggml_abort_callback = Option<unsafe extern "C" fn(data: *mut c_void) -> bool>;
/// Called by `ggml_abort` with its message before it aborts the process.
pub type ggml_abort_callback_t = Option<unsafe extern "C" fn(error_message: *const c_char)>;

/// ggml-rpc's protocol version (checked against `ggml-rpc.h` by `abi_check.c`).
pub const RPC_PROTO_MAJOR_VERSION: u32 = 7;
pub const RPC_PROTO_MINOR_VERSION: u32 = 0;
pub const RPC_PROTO_PATCH_VERSION: u32 = 0;
pub const GGML_RPC_MAX_SERVERS: usize = 16;
/// Returned by the CPU registry's "ggml_backend_dev_get_extra_bufts" proc address.
pub type ggml_backend_dev_get_extra_bufts_t =
    Option<unsafe extern "C" fn(device: ggml_backend_dev_t) -> *mut ggml_backend_buffer_type_t>;

extern "C" {
    // --- context and tensors ---
    pub fn ggml_reset(ctx: *mut ggml_context);
    pub fn ggml_init(params: ggml_init_params) -> *mut ggml_context;
    pub fn ggml_free(ctx: *mut ggml_context);
    pub fn ggml_tensor_overhead() -> usize;
    pub fn ggml_graph_overhead_custom(size: usize, grads: bool) -> usize;
    pub fn ggml_new_tensor_1d(ctx: *mut ggml_context, t: ggml_type, ne0: i64) -> *mut ggml_tensor;
    pub fn ggml_new_tensor_2d(
        ctx: *mut ggml_context,
        t: ggml_type,
        ne0: i64,
        ne1: i64,
    ) -> *mut ggml_tensor;
    pub fn ggml_new_tensor_3d(
        ctx: *mut ggml_context,
        t: ggml_type,
        ne0: i64,
        ne1: i64,
        ne2: i64,
    ) -> *mut ggml_tensor;
    pub fn ggml_new_tensor_4d(
        ctx: *mut ggml_context,
        t: ggml_type,
        ne0: i64,
        ne1: i64,
        ne2: i64,
        ne3: i64,
    ) -> *mut ggml_tensor;
    pub fn ggml_set_name(t: *mut ggml_tensor, name: *const c_char) -> *mut ggml_tensor;
    pub fn ggml_set_input(t: *mut ggml_tensor);
    pub fn ggml_set_output(t: *mut ggml_tensor);
    pub fn ggml_nbytes(t: *const ggml_tensor) -> usize;
    pub fn ggml_nelements(t: *const ggml_tensor) -> i64;
    pub fn ggml_row_size(t: ggml_type, ne: i64) -> usize;
    pub fn ggml_type_size(t: ggml_type) -> usize;
    pub fn ggml_blck_size(t: ggml_type) -> i64;
    pub fn ggml_is_quantized(t: ggml_type) -> bool;
    pub fn ggml_type_name(t: ggml_type) -> *const c_char;
    pub fn ggml_is_contiguous(t: *const ggml_tensor) -> bool;

    // --- operations ---
    pub fn ggml_add(
        ctx: *mut ggml_context,
        a: *mut ggml_tensor,
        b: *mut ggml_tensor,
    ) -> *mut ggml_tensor;
    pub fn ggml_mul(
        ctx: *mut ggml_context,
        a: *mut ggml_tensor,
        b: *mut ggml_tensor,
    ) -> *mut ggml_tensor;
    pub fn ggml_scale(ctx: *mut ggml_context, a: *mut ggml_tensor, s: f32) -> *mut ggml_tensor;
    pub fn ggml_mul_mat(
        ctx: *mut ggml_context,
        a: *mut ggml_tensor,
        b: *mut ggml_tensor,
    ) -> *mut ggml_tensor;
    pub fn ggml_prec_set_acc(a: *mut ggml_tensor, prec: ggml_prec) -> bool;
    pub fn ggml_custom_4d(
        ctx: *mut ggml_context,
        type_: ggml_type,
        ne0: i64,
        ne1: i64,
        ne2: i64,
        ne3: i64,
        args: *mut *mut ggml_tensor,
        n_args: c_int,
        fun: ggml_custom_op_t,
        n_tasks: c_int,
        userdata: *mut c_void,
    ) -> *mut ggml_tensor;
    pub fn ggml_mul_mat_set_hint(a: *mut ggml_tensor, hint: ggml_op_hint);
    pub fn ggml_rms_norm(ctx: *mut ggml_context, a: *mut ggml_tensor, eps: f32)
        -> *mut ggml_tensor;
    pub fn ggml_silu(ctx: *mut ggml_context, a: *mut ggml_tensor) -> *mut ggml_tensor;
    pub fn ggml_gelu(ctx: *mut ggml_context, a: *mut ggml_tensor) -> *mut ggml_tensor;
    pub fn ggml_tanh(ctx: *mut ggml_context, a: *mut ggml_tensor) -> *mut ggml_tensor;
    pub fn ggml_swiglu(ctx: *mut ggml_context, a: *mut ggml_tensor) -> *mut ggml_tensor;
    pub fn ggml_swiglu_split(
        ctx: *mut ggml_context,
        a: *mut ggml_tensor,
        b: *mut ggml_tensor,
    ) -> *mut ggml_tensor;
    pub fn ggml_geglu_split(
        ctx: *mut ggml_context,
        a: *mut ggml_tensor,
        b: *mut ggml_tensor,
    ) -> *mut ggml_tensor;
    pub fn ggml_swiglu_oai(
        ctx: *mut ggml_context,
        a: *mut ggml_tensor,
        b: *mut ggml_tensor,
        alpha: f32,
        limit: f32,
    ) -> *mut ggml_tensor;
    pub fn ggml_add_id(
        ctx: *mut ggml_context,
        a: *mut ggml_tensor,
        b: *mut ggml_tensor,
        ids: *mut ggml_tensor,
    ) -> *mut ggml_tensor;
    pub fn ggml_cpy(
        ctx: *mut ggml_context,
        a: *mut ggml_tensor,
        b: *mut ggml_tensor,
    ) -> *mut ggml_tensor;
    pub fn ggml_sigmoid(ctx: *mut ggml_context, a: *mut ggml_tensor) -> *mut ggml_tensor;
    pub fn ggml_softplus(ctx: *mut ggml_context, a: *mut ggml_tensor) -> *mut ggml_tensor;
    pub fn ggml_ssm_conv(
        ctx: *mut ggml_context,
        sx: *mut ggml_tensor,
        c: *mut ggml_tensor,
    ) -> *mut ggml_tensor;
    pub fn ggml_gated_delta_net(
        ctx: *mut ggml_context,
        q: *mut ggml_tensor,
        k: *mut ggml_tensor,
        v: *mut ggml_tensor,
        g: *mut ggml_tensor,
        beta: *mut ggml_tensor,
        state: *mut ggml_tensor,
        k_snapshots: i64,
    ) -> *mut ggml_tensor;
    pub fn ggml_rope_multi(
        ctx: *mut ggml_context,
        a: *mut ggml_tensor,
        b: *mut ggml_tensor,
        c: *mut ggml_tensor,
        n_dims: c_int,
        sections: *mut c_int,
        mode: c_int,
        n_ctx_orig: c_int,
        freq_base: f32,
        freq_scale: f32,
        ext_factor: f32,
        attn_factor: f32,
        beta_fast: f32,
        beta_slow: f32,
    ) -> *mut ggml_tensor;
    pub fn ggml_cast(ctx: *mut ggml_context, a: *mut ggml_tensor, t: ggml_type)
        -> *mut ggml_tensor;
    pub fn ggml_cont(ctx: *mut ggml_context, a: *mut ggml_tensor) -> *mut ggml_tensor;
    pub fn ggml_concat(
        ctx: *mut ggml_context,
        a: *mut ggml_tensor,
        b: *mut ggml_tensor,
        dim: c_int,
    ) -> *mut ggml_tensor;
    pub fn ggml_reshape_2d(
        ctx: *mut ggml_context,
        a: *mut ggml_tensor,
        ne0: i64,
        ne1: i64,
    ) -> *mut ggml_tensor;
    pub fn ggml_reshape_3d(
        ctx: *mut ggml_context,
        a: *mut ggml_tensor,
        ne0: i64,
        ne1: i64,
        ne2: i64,
    ) -> *mut ggml_tensor;
    pub fn ggml_reshape_4d(
        ctx: *mut ggml_context,
        a: *mut ggml_tensor,
        ne0: i64,
        ne1: i64,
        ne2: i64,
        ne3: i64,
    ) -> *mut ggml_tensor;
    pub fn ggml_view_1d(
        ctx: *mut ggml_context,
        a: *mut ggml_tensor,
        ne0: i64,
        offset: usize,
    ) -> *mut ggml_tensor;
    pub fn ggml_view_2d(
        ctx: *mut ggml_context,
        a: *mut ggml_tensor,
        ne0: i64,
        ne1: i64,
        nb1: usize,
        offset: usize,
    ) -> *mut ggml_tensor;
    pub fn ggml_view_3d(
        ctx: *mut ggml_context,
        a: *mut ggml_tensor,
        ne0: i64,
        ne1: i64,
        ne2: i64,
        nb1: usize,
        nb2: usize,
        offset: usize,
    ) -> *mut ggml_tensor;
    pub fn ggml_view_4d(
        ctx: *mut ggml_context,
        a: *mut ggml_tensor,
        ne0: i64,
        ne1: i64,
        ne2: i64,
        ne3: i64,
        nb1: usize,
        nb2: usize,
        nb3: usize,
        offset: usize,
    ) -> *mut ggml_tensor;
    pub fn ggml_permute(
        ctx: *mut ggml_context,
        a: *mut ggml_tensor,
        axis0: c_int,
        axis1: c_int,
        axis2: c_int,
        axis3: c_int,
    ) -> *mut ggml_tensor;
    pub fn ggml_transpose(ctx: *mut ggml_context, a: *mut ggml_tensor) -> *mut ggml_tensor;
    pub fn ggml_get_rows(
        ctx: *mut ggml_context,
        a: *mut ggml_tensor,
        b: *mut ggml_tensor,
    ) -> *mut ggml_tensor;
    pub fn ggml_set_rows(
        ctx: *mut ggml_context,
        a: *mut ggml_tensor,
        b: *mut ggml_tensor,
        c: *mut ggml_tensor,
    ) -> *mut ggml_tensor;
    pub fn ggml_soft_max(ctx: *mut ggml_context, a: *mut ggml_tensor) -> *mut ggml_tensor;
    pub fn ggml_argsort_top_k(
        ctx: *mut ggml_context,
        a: *mut ggml_tensor,
        k: c_int,
    ) -> *mut ggml_tensor;
    pub fn ggml_sum_rows(ctx: *mut ggml_context, a: *mut ggml_tensor) -> *mut ggml_tensor;
    pub fn ggml_clamp(
        ctx: *mut ggml_context,
        a: *mut ggml_tensor,
        min: f32,
        max: f32,
    ) -> *mut ggml_tensor;
    pub fn ggml_div(
        ctx: *mut ggml_context,
        a: *mut ggml_tensor,
        b: *mut ggml_tensor,
    ) -> *mut ggml_tensor;
    pub fn ggml_mul_mat_id(
        ctx: *mut ggml_context,
        as_: *mut ggml_tensor,
        b: *mut ggml_tensor,
        ids: *mut ggml_tensor,
    ) -> *mut ggml_tensor;
    pub fn ggml_soft_max_ext(
        ctx: *mut ggml_context,
        a: *mut ggml_tensor,
        mask: *mut ggml_tensor,
        scale: f32,
        max_bias: f32,
    ) -> *mut ggml_tensor;
    pub fn ggml_soft_max_add_sinks(a: *mut ggml_tensor, sinks: *mut ggml_tensor);
    pub fn ggml_flash_attn_ext_add_sinks(a: *mut ggml_tensor, sinks: *mut ggml_tensor);
    pub fn ggml_rope_ext(
        ctx: *mut ggml_context,
        a: *mut ggml_tensor,
        b: *mut ggml_tensor,
        c: *mut ggml_tensor,
        n_dims: c_int,
        mode: c_int,
        n_ctx_orig: c_int,
        freq_base: f32,
        freq_scale: f32,
        ext_factor: f32,
        attn_factor: f32,
        beta_fast: f32,
        beta_slow: f32,
    ) -> *mut ggml_tensor;
    pub fn ggml_flash_attn_ext(
        ctx: *mut ggml_context,
        q: *mut ggml_tensor,
        k: *mut ggml_tensor,
        v: *mut ggml_tensor,
        mask: *mut ggml_tensor,
        scale: f32,
        max_bias: f32,
        logit_softcap: f32,
    ) -> *mut ggml_tensor;

    // --- graphs ---
    pub fn ggml_new_graph_custom(
        ctx: *mut ggml_context,
        size: usize,
        grads: bool,
    ) -> *mut ggml_cgraph;
    pub fn ggml_build_forward_expand(g: *mut ggml_cgraph, t: *mut ggml_tensor);
    pub fn ggml_graph_n_nodes(g: *mut ggml_cgraph) -> c_int;
    pub fn ggml_graph_node(g: *mut ggml_cgraph, i: c_int) -> *mut ggml_tensor;

    // --- logging ---
    pub fn ggml_log_set(cb: ggml_log_callback, user_data: *mut c_void);

    // --- backends ---
    pub fn ggml_backend_cpu_init() -> ggml_backend_t;
    pub fn ggml_backend_cpu_set_n_threads(b: ggml_backend_t, n: c_int);
    pub fn ggml_backend_cpu_set_abort_callback(
        b: ggml_backend_t,
        cb: ggml_abort_callback,
        data: *mut c_void,
    );
    pub fn ggml_backend_cpu_reg() -> ggml_backend_reg_t;
    pub fn ggml_backend_cpu_buffer_type() -> ggml_backend_buffer_type_t;
    pub fn ggml_backend_cpu_buffer_from_ptr(ptr: *mut c_void, size: usize)
        -> ggml_backend_buffer_t;
    pub fn ggml_backend_free(b: ggml_backend_t);
    pub fn ggml_backend_name(b: ggml_backend_t) -> *const c_char;
    pub fn ggml_backend_graph_compute(b: ggml_backend_t, g: *mut ggml_cgraph) -> ggml_status;
    pub fn ggml_backend_get_default_buffer_type(b: ggml_backend_t) -> ggml_backend_buffer_type_t;
    pub fn ggml_backend_reg_dev_get(reg: ggml_backend_reg_t, index: usize) -> ggml_backend_dev_t;
    pub fn ggml_backend_reg_get_proc_address(
        reg: ggml_backend_reg_t,
        name: *const c_char,
    ) -> *mut c_void;
    pub fn ggml_backend_dev_count() -> usize;
    pub fn ggml_backend_dev_get(index: usize) -> ggml_backend_dev_t;
    pub fn ggml_backend_dev_name(d: ggml_backend_dev_t) -> *const c_char;
    pub fn ggml_backend_dev_description(d: ggml_backend_dev_t) -> *const c_char;
    pub fn ggml_backend_dev_supports_op(d: ggml_backend_dev_t, op: *const ggml_tensor) -> bool;
    pub fn ggml_backend_dev_type(d: ggml_backend_dev_t) -> ggml_backend_dev_type;
    pub fn ggml_backend_dev_memory(d: ggml_backend_dev_t, free: *mut usize, total: *mut usize);
    pub fn ggml_backend_dev_init(d: ggml_backend_dev_t, params: *const c_char) -> ggml_backend_t;
    pub fn ggml_backend_dev_buffer_type(d: ggml_backend_dev_t) -> ggml_backend_buffer_type_t;
    pub fn ggml_backend_reg_count() -> usize;
    pub fn ggml_backend_reg_dev_count(reg: ggml_backend_reg_t) -> usize;
    pub fn ggml_backend_register(reg: ggml_backend_reg_t);
    pub fn ggml_backend_dev_backend_reg(d: ggml_backend_dev_t) -> ggml_backend_reg_t;
    pub fn ggml_backend_dev_by_type(t: ggml_backend_dev_type) -> ggml_backend_dev_t;
    pub fn ggml_set_abort_callback(cb: ggml_abort_callback_t) -> ggml_abort_callback_t;

    /// Ember's shim (`ember_shim.c`): `dev` reporting at most `cap` bytes of memory (null
    /// when it cannot be made).
    pub fn ember_capped_device(dev: ggml_backend_dev_t, cap: usize) -> ggml_backend_dev_t;

    // --- ggml-rpc ---
    /// Connects to `endpoint` ("host:port"; aborts through `ggml_abort` when it cannot) and
    /// returns a registry of its devices (null when it has none).
    pub fn ggml_backend_rpc_add_server(endpoint: *const c_char) -> ggml_backend_reg_t;
    /// Serves `devices` on `endpoint` until the process ends (returns only on failure).
    pub fn ggml_backend_rpc_start_server(
        endpoint: *const c_char,
        cache_dir: *const c_char,
        n_threads: usize,
        n_devices: usize,
        devices: *mut ggml_backend_dev_t,
    );
    pub fn ggml_backend_reg_get(index: usize) -> ggml_backend_reg_t;
    pub fn ggml_backend_reg_name(reg: ggml_backend_reg_t) -> *const c_char;
    pub fn ggml_backend_buft_get_alignment(buft: ggml_backend_buffer_type_t) -> usize;
    pub fn ggml_backend_buft_get_alloc_size(
        buft: ggml_backend_buffer_type_t,
        t: *const ggml_tensor,
    ) -> usize;
    pub fn ggml_backend_buft_is_host(buft: ggml_backend_buffer_type_t) -> bool;
    pub fn ggml_backend_buft_name(buft: ggml_backend_buffer_type_t) -> *const c_char;
    pub fn ggml_backend_buft_alloc_buffer(
        buft: ggml_backend_buffer_type_t,
        size: usize,
    ) -> ggml_backend_buffer_t;
    pub fn ggml_backend_buffer_free(buf: ggml_backend_buffer_t);
    pub fn ggml_backend_buffer_get_size(buf: ggml_backend_buffer_t) -> usize;
    pub fn ggml_backend_buffer_get_base(buf: ggml_backend_buffer_t) -> *mut c_void;
    pub fn ggml_backend_buffer_clear(buf: ggml_backend_buffer_t, value: u8);
    pub fn ggml_backend_buffer_set_usage(
        buf: ggml_backend_buffer_t,
        usage: ggml_backend_buffer_usage,
    );
    pub fn ggml_backend_buffer_name(buf: ggml_backend_buffer_t) -> *const c_char;
    pub fn ggml_backend_tensor_alloc(
        buf: ggml_backend_buffer_t,
        t: *mut ggml_tensor,
        addr: *mut c_void,
    ) -> ggml_status;
    pub fn ggml_backend_tensor_set(
        t: *mut ggml_tensor,
        data: *const c_void,
        offset: usize,
        size: usize,
    );
    pub fn ggml_backend_tensor_get(
        t: *const ggml_tensor,
        data: *mut c_void,
        offset: usize,
        size: usize,
    );
    pub fn ggml_backend_alloc_ctx_tensors_from_buft_size(
        ctx: *mut ggml_context,
        buft: ggml_backend_buffer_type_t,
    ) -> usize;
    pub fn ggml_backend_alloc_ctx_tensors_from_buft(
        ctx: *mut ggml_context,
        buft: ggml_backend_buffer_type_t,
    ) -> ggml_backend_buffer_t;

    // --- scheduler ---
    pub fn ggml_backend_sched_new(
        backends: *mut ggml_backend_t,
        bufts: *mut ggml_backend_buffer_type_t,
        n_backends: c_int,
        graph_size: usize,
        parallel: bool,
        op_offload: bool,
    ) -> ggml_backend_sched_t;
    pub fn ggml_backend_sched_free(s: ggml_backend_sched_t);
    pub fn ggml_backend_sched_reserve(s: ggml_backend_sched_t, g: *mut ggml_cgraph) -> bool;
    pub fn ggml_backend_sched_alloc_graph(s: ggml_backend_sched_t, g: *mut ggml_cgraph) -> bool;
    pub fn ggml_backend_sched_graph_compute(
        s: ggml_backend_sched_t,
        g: *mut ggml_cgraph,
    ) -> ggml_status;
    pub fn ggml_backend_sched_reset(s: ggml_backend_sched_t);
    pub fn ggml_backend_sched_set_eval_callback(
        s: ggml_backend_sched_t,
        cb: Option<unsafe extern "C" fn(*mut ggml_tensor, bool, *mut c_void) -> bool>,
        user_data: *mut c_void,
    );
    pub fn ggml_op_desc(t: *const ggml_tensor) -> *const c_char;
    pub fn ggml_fp16_to_fp32(h: u16) -> f32;
    pub fn ggml_backend_buffer_is_host(b: *mut ggml_backend_buffer) -> bool;
    pub fn ggml_backend_sched_get_buffer_size(s: ggml_backend_sched_t, b: ggml_backend_t) -> usize;
    pub fn ggml_backend_sched_get_tensor_backend(
        s: ggml_backend_sched_t,
        t: *mut ggml_tensor,
    ) -> ggml_backend_t;
    pub fn ggml_backend_sched_get_n_splits(s: ggml_backend_sched_t) -> c_int;
    pub fn ggml_backend_sched_set_tensor_backend(
        s: ggml_backend_sched_t,
        t: *mut ggml_tensor,
        b: ggml_backend_t,
    );

    // --- CPU features ---
    pub fn ggml_cpu_has_avx2() -> c_int;
    pub fn ggml_cpu_has_avx512() -> c_int;
    pub fn ggml_cpu_has_avx512_vnni() -> c_int;
    pub fn ggml_cpu_has_fma() -> c_int;
    pub fn ggml_cpu_has_f16c() -> c_int;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_layout_matches_abi_check() {
        // abi_check.c asserts the C side; this asserts the Rust side of the same numbers.
        assert_eq!(std::mem::size_of::<ggml_tensor>(), 336);
        assert_eq!(std::mem::offset_of!(ggml_tensor, data), 248);
        assert_eq!(std::mem::offset_of!(ggml_tensor, name), 256);
        assert_eq!(std::mem::size_of::<ggml_init_params>(), 24);
    }
}
