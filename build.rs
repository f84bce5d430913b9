//! Build facts for `ember --version`: git revision, profile, target, enabled backends.
use std::process::Command;

fn main() {
    let rev = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let mut backends = vec!["cpu"];
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        backends.push("cuda");
    }
    if std::env::var_os("CARGO_FEATURE_METAL").is_some() {
        backends.push("metal");
    }
    println!("cargo:rustc-env=EMBER_GIT_REV={rev}");
    println!("cargo:rustc-env=EMBER_BACKENDS={}", backends.join(","));
    // Published by ggml-sys (links = "ggml") to its dependents' build scripts.
    let dep = |k: &str| std::env::var(format!("DEP_GGML_{k}")).unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=EMBER_GGML_VERSION={}", dep("VERSION"));
    println!("cargo:rustc-env=EMBER_CPU_FLAGS={}", dep("CPU_FLAGS"));
    println!(
        "cargo:rustc-env=EMBER_PROFILE={}",
        std::env::var("PROFILE").unwrap_or_default()
    );
    println!(
        "cargo:rustc-env=EMBER_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
}
