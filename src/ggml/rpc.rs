//! ggml's RPC backend: the devices of remote `rpc-server`s join the scheduler as ordinary
//! backends (`--rpc`), and `ember rpc-server` serves this machine's devices to remote clients.
//! The protocol is ggml's own (versioned by its HELLO handshake); nothing here speaks it.
//!
//! ggml-rpc ends in `ggml_abort` when a server cannot be reached, refuses the handshake or
//! dies mid-run. [`exit_on_abort`] turns every such abort into one error line and exit 1.

use std::ffi::{c_char, CStr, CString};
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::ptr::NonNull;
use std::time::Duration;

use ggml_sys as sys;

use super::Device;

/// Why a remote server could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("--rpc: '{0}' is not HOST:PORT")]
    BadEndpoint(String),
    #[error("--rpc: cannot reach {endpoint}: {why}")]
    Unreachable { endpoint: String, why: String },
    #[error("--rpc: {0} serves no devices")]
    NoDevices(String),
    #[error("rpc-server: {0}")]
    Serve(String),
}

/// Split "host:port" at its last colon (as ggml does); IPv6 hosts may be bracketed.
pub fn parse_endpoint(s: &str) -> Result<(String, u16), RpcError> {
    let bad = || RpcError::BadEndpoint(s.to_string());
    let (host, port) = s.trim().rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// Connect to the ggml-rpc server at `endpoint` ("host:port") and register its devices with
/// ggml. The server is first reached with a plain TCP connection bounded by `timeout`, so an
/// unreachable one is a clear error here rather than a hang or an abort inside ggml.
pub fn connect(endpoint: &str, timeout: Duration) -> Result<Vec<Device>, RpcError> {
    let (host, port) = parse_endpoint(endpoint)?;
    let unreachable = |why: String| RpcError::Unreachable {
        endpoint: endpoint.to_string(),
        why,
    };
    let addrs: Vec<_> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| unreachable(e.to_string()))?
        .collect();
    let mut last = String::from("no address");
    let reached = addrs
        .iter()
        .any(|a| match TcpStream::connect_timeout(a, timeout) {
            Ok(_) => true,
            Err(e) => {
                last = e.to_string();
                false
            }
        });
    if !reached {
        return Err(unreachable(last));
    }
    let c = CString::new(endpoint.trim()).map_err(|_| RpcError::BadEndpoint(endpoint.into()))?;
    // A server that accepts but does not answer the handshake (it serves one client at a
    // time, and another holds it) would keep ggml waiting for ever: a watchdog ends the
    // process after `timeout` with one error line instead.
    let (done, waiting) = std::sync::mpsc::channel::<()>();
    let who = endpoint.to_string();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = waiting.recv_timeout(timeout) {
            fail(&format!(
                "--rpc: {who} accepted the connection but did not answer within {} s (an \
                 rpc-server serves one client at a time: is another one using it?)",
                timeout.as_secs()
            ));
        }
    });
    // SAFETY: `c` is a NUL-terminated string that outlives the call (ggml copies it). ggml
    // connects and handshakes here; a failure ends in ggml_abort (see `exit_on_abort`).
    let reg = unsafe { sys::ggml_backend_rpc_add_server(c.as_ptr()) };
    let _ = done.send(());
    if reg.is_null() {
        return Err(RpcError::NoDevices(endpoint.to_string()));
    }
    // SAFETY: `reg` is a live registry ggml keeps for the process.
    let n = unsafe { sys::ggml_backend_reg_dev_count(reg) };
    let devices = (0..n)
        // SAFETY: `i` is below the registry's device count; devices live as long as it.
        .filter_map(|i| NonNull::new(unsafe { sys::ggml_backend_reg_dev_get(reg, i) }))
        .map(|raw| Device { raw })
        .collect::<Vec<_>>();
    if devices.is_empty() {
        return Err(RpcError::NoDevices(endpoint.to_string()));
    }
    // Registering makes the devices visible to `Device::all`. The same server given twice
    // gets the registry `add_server` made before: registered once only.
    if !Device::all().contains(&devices[0]) {
        // SAFETY: as above.
        unsafe { sys::ggml_backend_register(reg) };
    }
    Ok(devices)
}

/// Serve `devices` to ggml-rpc clients on `host:port` with `n_threads` CPU threads and, if
/// given, a local cache of large tensors in `cache`. Returns only when the server cannot run
/// (the port is taken, a backend cannot start).
pub fn serve(
    host: &str,
    port: u16,
    cache: Option<&Path>,
    n_threads: usize,
    devices: &[Device],
) -> Result<(), RpcError> {
    let endpoint = CString::new(format!("{host}:{port}"))
        .map_err(|_| RpcError::Serve(format!("bad host '{host}'")))?;
    let cache = match cache {
        Some(p) => Some(
            CString::new(p.to_string_lossy().as_bytes())
                .map_err(|_| RpcError::Serve(format!("bad cache path {}", p.display())))?,
        ),
        None => None,
    };
    let mut raw: Vec<sys::ggml_backend_dev_t> = devices.iter().map(|d| d.raw.as_ptr()).collect();
    if raw.is_empty() {
        return Err(RpcError::Serve("no device to serve".into()));
    }
    // ggml's server prints its banner and each connection on stdout; Ember keeps stdout for
    // what the user asked for, and a server has nothing to say there.
    // SAFETY: plain descriptor duplication of the process's own stderr onto stdout.
    unsafe { libc::dup2(2, 1) };
    // SAFETY: the strings are NUL-terminated and outlive the call (it runs until the server
    // stops); `raw` holds `raw.len()` live static devices.
    unsafe {
        sys::ggml_backend_rpc_start_server(
            endpoint.as_ptr(),
            cache.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            n_threads,
            raw.len(),
            raw.as_mut_ptr(),
        )
    };
    let why = super::log::last_error()
        .unwrap_or_else(|| "the server stopped (is the port already in use?)".into());
    Err(RpcError::Serve(why))
}

/// `devices`, each reporting at most `bytes` of memory to clients (`rpc-server --mem`).
pub fn cap_memory(devices: &[Device], bytes: u64) -> Result<Vec<Device>, RpcError> {
    devices
        .iter()
        .map(|d| {
            // SAFETY: `d` is a live static device; the proxy ggml gets back is leaked on
            // purpose (devices live for the whole process).
            let raw = unsafe { sys::ember_capped_device(d.raw.as_ptr(), bytes as usize) };
            NonNull::new(raw)
                .map(|raw| Device { raw })
                .ok_or_else(|| RpcError::Serve(format!("cannot cap {}'s memory", d.name())))
        })
        .collect()
}

/// "…/ggml-rpc.cpp:547: Failed to connect to 127.0.0.1:50052" → the message alone.
fn strip_location(msg: &str) -> &str {
    let msg = msg.trim_end();
    match msg.split_once(": ") {
        Some((loc, rest))
            if loc
                .rsplit_once(':')
                .is_some_and(|(_, line)| line.parse::<u32>().is_ok()) =>
        {
            rest
        }
        _ => msg,
    }
}

unsafe extern "C" fn on_abort(msg: *const c_char) {
    let text = if msg.is_null() {
        String::new()
    } else {
        // SAFETY: ggml passes a NUL-terminated message valid for the call.
        unsafe { CStr::from_ptr(msg) }
            .to_string_lossy()
            .into_owned()
    };
    let mut line = strip_location(&text).trim().to_string();
    if let Some(last) = super::log::last_error().filter(|l| !line.contains(l.as_str())) {
        line = format!("{line} ({last})");
    }
    fail(&line);
}

/// One error line on stderr, then exit 1 at once.
fn fail(line: &str) -> ! {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "ember: error: {}", line.replace('\n', " "));
    let _ = err.flush();
    // SAFETY: `_exit` ends the process at once, without running atexit handlers or C++ static
    // destructors that other ggml threads (the RPC dispatcher) may still be using.
    unsafe { libc::_exit(1) }
}

/// From now on, an abort inside ggml (an RPC server unreachable, refusing the handshake or
/// gone mid-run) prints one `error:` line and exits with status 1 instead of a core dump.
pub fn exit_on_abort() {
    // SAFETY: `on_abort` is a valid callback for the whole process.
    unsafe { sys::ggml_set_abort_callback(Some(on_abort)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_host_and_port() {
        assert_eq!(
            parse_endpoint("127.0.0.1:50052").unwrap(),
            ("127.0.0.1".into(), 50052)
        );
        assert_eq!(parse_endpoint("[::1]:8").unwrap(), ("::1".into(), 8));
        assert_eq!(parse_endpoint("box.lan:1").unwrap(), ("box.lan".into(), 1));
        for bad in ["", "host", ":80", "host:", "host:0", "host:99999", "host:x"] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn abort_messages_lose_their_source_location() {
        assert_eq!(
            strip_location("/x/ggml-rpc.cpp:547: Failed to connect to a:1\n"),
            "Failed to connect to a:1"
        );
        assert_eq!(strip_location("plain: text"), "plain: text");
    }

    #[test]
    fn an_unreachable_server_is_an_error_not_an_abort() {
        // A port nothing listens on (bound, then released).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = connect(&format!("127.0.0.1:{port}"), Duration::from_secs(2)).unwrap_err();
        assert!(e.to_string().contains("cannot reach"), "{e}");
    }
}
