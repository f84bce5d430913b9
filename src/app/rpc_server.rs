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

/// The OpenMP setting Ember runs RPC processes with (unless the user set one).
const WAIT_POLICY: &str = "OMP_WAIT_POLICY";

/// With `--rpc`, and in `rpc-server`, the process's compute threads wait for work passively:
/// between its pieces of a graph the machine is waiting for the other side, and OpenMP's
/// default spinning there takes the cores the other side computes on (on one machine, the
/// loopback split ran 2 t/s instead of 40 with threads told to spin; on separate machines it
/// only wastes power). OpenMP reads the setting once, when the program starts, so the
/// process starts itself again with it set; a user's own `OMP_WAIT_POLICY` is left alone.
pub fn passive_threads_for_rpc(cli: &crate::cli::Cli) {
    let rpc = matches!(cli.command, Some(crate::cli::Command::RpcServer(_)))
        || !cli.rpc_servers().is_empty();
    if !rpc || std::env::var_os(WAIT_POLICY).is_some() || cfg!(target_vendor = "apple") {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(WAIT_POLICY, "passive")
        .exec();
    // Only reached when the new start failed: go on as we are.
    log::debug!("could not restart with {WAIT_POLICY}=passive: {err}");
}

pub fn run(a: &RpcServerArgs) -> Result<()> {
    let threads = crate::cli::config::threads(a.threads)?;
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
            "rpc-server on {}: the RPC protocol has no authentication (anyone who reaches the \
             port can use this machine); prefer 127.0.0.1 and an ssh tunnel (see the README)",
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
