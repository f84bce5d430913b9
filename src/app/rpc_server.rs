//! `ember rpc-server` (serve this machine's devices to ggml-rpc clients) and the client side's
//! start: connecting to the `--rpc` servers before a model is loaded.

use std::time::Duration;

use anyhow::{bail, Result};

use crate::cli::args::RpcServerArgs;
use crate::ggml::{rpc, Device, DeviceKind};

/// How long reaching a server may take before `--rpc` gives up on it.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connect to every `--rpc` server (their devices join ggml's registry, where the offload
/// plan finds them). From here on a server that fails mid-run ends the process with one
/// error line and exit 1.
pub fn connect_all(endpoints: &[String]) -> Result<()> {
    if endpoints.is_empty() {
        return Ok(());
    }
    if endpoints.len() > ggml_sys::GGML_RPC_MAX_SERVERS {
        bail!(
            "--rpc: at most {} servers (got {})",
            ggml_sys::GGML_RPC_MAX_SERVERS,
            endpoints.len()
        );
    }
    rpc::exit_on_abort();
    for ep in endpoints {
        let devices = rpc::connect(ep, CONNECT_TIMEOUT)?;
        for d in devices {
            let (free, total) = d.memory();
            log::info!(
                "rpc: {} at {ep}: {} MiB, {} MiB free",
                d.name(),
                total >> 20,
                free >> 20
            );
        }
    }
    Ok(())
}

pub fn run(a: &RpcServerArgs) -> Result<()> {
    let threads = match a.threads {
        Some(0) => bail!(crate::cli::config::UsageError(
            "--threads must be at least 1".into()
        )),
        Some(t) => t,
        None => std::thread::available_parallelism().map_or(4, |n| n.get()),
    };
    let gpus = Device::gpus();
    let devices: Vec<Device> = if gpus.is_empty() || a.cpu {
        Device::cpu().into_iter().collect()
    } else {
        gpus
    };
    if devices.is_empty() {
        bail!("rpc-server: no device to serve");
    }
    let loopback = match a.host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => a.host == "localhost",
    };
    if !loopback {
        log::warn!(
            "rpc-server: listening on {} — the RPC protocol has no authentication: anyone who \
             reaches this port can use this machine; prefer 127.0.0.1 and an ssh tunnel",
            a.host
        );
        eprintln!(
            "ember: warning: rpc-server on {}: the protocol has no authentication; tunnel it \
             (e.g. ssh -L) instead of exposing the port",
            a.host
        );
    }
    if let Some(dir) = &a.cache {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("--cache {}: {e}", dir.display()))?;
    }
    let devices = match a.mem {
        Some(0) => bail!(crate::cli::config::UsageError(
            "--mem must be at least 1 MiB".into()
        )),
        Some(mib) => rpc::cap_memory(&devices, mib << 20)?,
        None => devices,
    };
    for d in &devices {
        let kind = if d.kind() == DeviceKind::Cpu {
            format!(", {threads} threads")
        } else {
            String::new()
        };
        let (free, _) = d.memory();
        eprintln!(
            "ember: rpc-server: serving {}{kind}, {} MiB to clients, on {}:{}",
            d.summary(),
            free >> 20,
            a.host,
            a.port
        );
    }
    rpc::exit_on_abort();
    rpc::serve(&a.host, a.port, a.cache.as_deref(), threads, &devices)?;
    Ok(())
}
