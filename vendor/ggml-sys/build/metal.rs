//! `--features metal` (macOS): compiles ggml-metal with its shader sources embedded, as ggml's
//! CMake build does with `GGML_METAL_EMBED_LIBRARY=ON` (`ggml/src/ggml-metal/CMakeLists.txt`):
//! for each kernel source, the shared headers it includes are prepended, `#include`s of them and
//! `#pragma once` are removed, `ggml-common.h` and `ggml-metal-impl.h` are inlined, and the text
//! is embedded with `.incbin` between `ggml_metallib_<kind>_{start,end}` symbols; ggml compiles
//! the sources at run time. Links the Foundation, Metal and MetalKit frameworks.
//!
//! The lists of backend sources and kernel sources are read from that CMakeLists.txt, so they
//! follow the pinned ggml. Untested: no Mac was at hand when this was written.

use std::path::{Path, PathBuf};

/// Compile ggml-metal; returns the objects to put into libggml.a.
pub fn build(ggml: &Path, out: &Path, configure: &dyn Fn(&mut cc::Build)) -> Vec<PathBuf> {
    let dir = ggml.join("src").join("ggml-metal");
    let cmake = std::fs::read_to_string(dir.join("CMakeLists.txt"))
        .unwrap_or_else(|e| panic!("ggml-sys: cannot read ggml-metal's CMakeLists.txt: {e}"));
    let sources = cmake_list(&cmake, "ggml_add_backend_library(ggml-metal");
    let kernels = cmake_list(&cmake, "set(METALLIB_KERNEL_SOURCES");
    assert!(
        !sources.is_empty() && !kernels.is_empty(),
        "ggml-sys: ggml-metal's CMakeLists.txt has no source lists we recognise"
    );

    let gen = out.join("metal");
    std::fs::create_dir_all(&gen).expect("create OUT_DIR/metal");
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .unwrap_or_else(|e| panic!("ggml-sys: cannot read {}: {e}", p.display()))
    };
    let common = read(&ggml.join("src").join("ggml-common.h"));
    let impl_h = read(&dir.join("ggml-metal-impl.h"));
    let k = dir.join("kernels");
    let mut asm_files = Vec::new();
    for src in &kernels {
        let path = dir.join(src);
        let text = read(&path);
        let kind = path.file_stem().unwrap().to_string_lossy().into_owned();
        let sym = kind.replace('-', "_");
        // Step 1: the shared headers this source includes, then the source.
        let mut parts = vec![read(&k.join("common.h"))];
        for (inc, file) in [
            ("dequantize.h", "dequantize.h"),
            ("quantize.h", "quantize.h"),
            ("fa_common.metal", "fa_common.metal"),
            ("fa_vec_common.metal", "fa_vec_common.metal"),
        ] {
            if text.contains(&format!("#include \"{inc}\"")) {
                parts.push(read(&k.join(file)));
            }
        }
        parts.push(text);
        let joined = parts.concat();
        // Steps 2-4: drop internal includes and `#pragma once`, inline the two headers.
        let dropped = [
            "#include \"common.h\"",
            "#include \"dequantize.h\"",
            "#include \"quantize.h\"",
            "#include \"fa_common.metal\"",
            "#include \"fa_vec_common.metal\"",
            "#pragma once",
        ];
        let mut embed = String::with_capacity(joined.len() + common.len() + impl_h.len());
        for line in joined.split_inclusive('\n') {
            if dropped.iter().any(|d| line.contains(d)) {
                continue;
            }
            // As sed's `r` does: the file's lines in place of the marker line.
            let inlined = if line.contains("__embed_ggml-common.h__") {
                common.as_str()
            } else if line.contains("#include \"ggml-metal-impl.h\"") {
                impl_h.as_str()
            } else {
                line
            };
            embed.push_str(inlined);
            if !embed.ends_with('\n') {
                embed.push('\n');
            }
        }
        let embed_path = gen.join(format!("ggml-metal-embed-{kind}.metal"));
        std::fs::write(&embed_path, embed).expect("write embedded metal source");
        // Step 5: an assembly chunk with the kind's start/end symbols.
        let asm = format!(
            ".section __DATA,__ggml_metallib\n.globl _ggml_metallib_{sym}_start\n\
             _ggml_metallib_{sym}_start:\n.incbin \"{}\"\n.globl _ggml_metallib_{sym}_end\n\
             _ggml_metallib_{sym}_end:\n",
            embed_path.display()
        );
        let asm_path = gen.join(format!("ggml-metal-embed-{kind}.s"));
        std::fs::write(&asm_path, asm).expect("write metal embed assembly");
        asm_files.push(asm_path);
        println!("cargo:rerun-if-changed={}", path.display());
    }

    let mut objects = Vec::new();
    let files: Vec<PathBuf> = sources.iter().map(|s| dir.join(s)).collect();
    let (cpp, objc): (Vec<&PathBuf>, Vec<&PathBuf>) = files
        .iter()
        .partition(|p| p.extension().is_some_and(|e| e == "cpp"));
    let metal_build = |b: &mut cc::Build| {
        configure(b);
        b.include(&dir)
            .define("GGML_METAL_EMBED_LIBRARY", None)
            .define("GGML_USE_METAL", None);
    };
    let mut c = cc::Build::new();
    metal_build(&mut c);
    c.files(objc).files(&asm_files);
    objects.extend(c.compile_intermediates());
    let mut cxx = cc::Build::new();
    metal_build(&mut cxx);
    cxx.cpp(true).std("gnu++17").files(cpp);
    objects.extend(cxx.compile_intermediates());

    for f in ["Foundation", "Metal", "MetalKit"] {
        println!("cargo:rustc-link-lib=framework={f}");
    }
    objects
}

/// The words of a CMake call that starts with `head`, up to its closing parenthesis (comments
/// and `${...}` variables left out).
fn cmake_list(text: &str, head: &str) -> Vec<String> {
    let Some(start) = text.find(head) else {
        return Vec::new();
    };
    let rest = &text[start + head.len()..];
    let end = rest.find(')').unwrap_or(rest.len());
    rest[..end]
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(str::split_whitespace)
        .filter(|w| !w.starts_with('$'))
        .map(str::to_string)
        .collect()
}
