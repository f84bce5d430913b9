//! Routes ggml's own log lines into the `log` crate (shown with `-v`).

use std::ffi::{c_char, c_void, CStr};
use std::sync::Mutex;

/// ggml's last error-level line (an abort names it: "RPC server version mismatch: 6.1.0").
static LAST_ERROR: Mutex<String> = Mutex::new(String::new());

/// The last error line ggml logged, if any.
pub(super) fn last_error() -> Option<String> {
    let s = LAST_ERROR.lock().ok()?;
    (!s.is_empty()).then(|| s.clone())
}

unsafe extern "C" fn on_log(
    level: ggml_sys::ggml_log_level,
    text: *const c_char,
    _user: *mut c_void,
) {
    if text.is_null() {
        return;
    }
    // SAFETY: ggml passes a NUL-terminated string valid for the duration of the call.
    let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    let text = text.trim_end_matches('\n');
    if text.is_empty() {
        return;
    }
    match level {
        ggml_sys::GGML_LOG_LEVEL_ERROR => {
            if let Ok(mut last) = LAST_ERROR.lock() {
                last.clear();
                last.push_str(text.trim());
            }
            log::error!(target: "ggml", "{text}")
        }
        ggml_sys::GGML_LOG_LEVEL_WARN => log::warn!(target: "ggml", "{text}"),
        ggml_sys::GGML_LOG_LEVEL_INFO => log::info!(target: "ggml", "{text}"),
        _ => log::debug!(target: "ggml", "{text}"),
    }
}

/// Install the callback; call once at start-up (idempotent).
pub fn install_log_callback() {
    // SAFETY: `on_log` is a valid `extern "C"` function for the program's lifetime and ignores
    // its user-data pointer, which we pass as null.
    unsafe { ggml_sys::ggml_log_set(Some(on_log), std::ptr::null_mut()) };
}
