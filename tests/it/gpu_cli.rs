//! `-ngl` / `--main-gpu` and the device report, as they behave on a machine without a GPU (CI):
//! the flags are accepted, warn once, and the results are the CPU's.

use crate::common;

use std::process::Output;

use common::show;

fn ember(args: &[&str]) -> Output {
    common::run_ember(args, None, &[])
}

/// Whether this build found a GPU (then the no-GPU expectations do not apply).
fn has_gpu() -> bool {
    let o = ember(&["--version"]);
    let v = String::from_utf8_lossy(&o.stdout).into_owned();
    let devices = v.lines().find(|l| l.starts_with("devices:")).unwrap_or("");
    devices.contains("CUDA") || devices.contains("MTL")
}

#[test]
fn version_lists_backends_and_devices() {
    let o = ember(&["--version"]);
    assert!(o.status.success(), "{}", show(&o));
    let v = String::from_utf8_lossy(&o.stdout);
    assert!(v.starts_with("ember "), "{v}");
    assert!(v.contains("backends: cpu"), "{v}");
    assert!(v.contains("devices: CPU"), "{v}");
    let short = ember(&["-V"]);
    assert_eq!(short.stdout, o.stdout);
}

#[test]
#[cfg_attr(
    any(feature = "cuda", feature = "metal"),
    ignore = "expects a build without GPU backends (this one may find a GPU)"
)]
fn ngl_without_a_gpu_warns_once_and_computes_on_the_cpu() {
    assert!(!has_gpu(), "a build without GPU backends reports a GPU");
    let (_d, p) = common::tiny_model(21);
    let m = p.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut a = vec![
            "-m",
            m,
            "-p",
            "the cat",
            "-n",
            "8",
            "--temp",
            "0",
            "--ignore-eos",
            "--no-perf",
        ];
        a.extend_from_slice(extra);
        ember(&a)
    };
    let cpu = run(&[]);
    assert!(cpu.status.success(), "{}", show(&cpu));
    for ngl in [
        &["-ngl", "99"][..],
        &["--n-gpu-layers", "all"],
        &["-ngl", "1", "-mg", "0"],
    ] {
        let o = run(ngl);
        assert!(o.status.success(), "{ngl:?}: {}", show(&o));
        assert_eq!(o.stdout, cpu.stdout, "{ngl:?}: {}", show(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.matches("running on the CPU").count(), 1, "{}", show(&o));
    }
    // Target and draft model: still one warning.
    let o = run(&["-ngl", "99", "-md", m]);
    assert!(o.status.success(), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("running on the CPU").count(), 1, "{}", show(&o));
    // -ngl 0 says nothing.
    let o = run(&["-ngl", "0"]);
    assert!(o.status.success() && o.stderr.is_empty(), "{}", show(&o));
}

#[test]
fn ngl_takes_a_count_or_all() {
    let o = ember(&["-m", "x.gguf", "-p", "hi", "-ngl", "many"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not a layer count or 'all'"),
        "{}",
        show(&o)
    );
}

#[test]
fn bench_and_perplexity_accept_ngl() {
    let (_d, p) = common::tiny_model(22);
    let m = p.to_str().unwrap();
    let o = ember(&[
        "bench", "-m", m, "-p", "8", "-n", "4", "-r", "1", "-ngl", "99",
    ]);
    assert!(o.status.success(), "{}", show(&o));
    let text = p.with_file_name("t.txt");
    std::fs::write(&text, "the cat sat on the mat. ".repeat(40)).unwrap();
    let o = ember(&[
        "perplexity",
        "-m",
        m,
        "-f",
        text.to_str().unwrap(),
        "-c",
        "32",
        "--chunks",
        "1",
        "-ngl",
        "all",
    ]);
    assert!(o.status.success(), "{}", show(&o));
}
