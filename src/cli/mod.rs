//! Command-line interface: clap definitions with llama.cpp's flag names (`args`), then
//! validation into the settings the modes use (`config`).

pub mod args;
pub mod config;

pub use args::{Cli, Command};

/// Multi-letter single-dash flags llama.cpp users type, and their long forms.
const LLAMA_SHORT_FLAGS: &[(&str, &str)] = &[
    ("-ctk", "--cache-type-k"),
    ("-ctv", "--cache-type-v"),
    ("-fa", "--flash-attn"),
    ("-ub", "--ubatch-size"),
    ("-ngl", "--n-gpu-layers"),
    ("-cnv", "--conversation"),
    ("-no-cnv", "--no-conversation"),
    ("-nkvo", "--no-kv-offload"),
];

/// Rewrite llama.cpp-style multi-letter short flags (`-ctk q8_0`, `-fa=on`) to their long
/// forms so clap can parse them. Everything after `--` is left alone.
pub fn normalize_args<I: IntoIterator<Item = String>>(args: I) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = false;
    for a in args {
        if rest || a == "--" {
            rest = true;
            out.push(a);
            continue;
        }
        let (flag, value) = match a.split_once('=') {
            Some((f, v)) if f.starts_with('-') && !f.starts_with("--") => {
                (f.to_string(), Some(v.to_string()))
            }
            _ => (a.clone(), None),
        };
        match LLAMA_SHORT_FLAGS.iter().find(|(s, _)| *s == flag) {
            Some((_, long)) => out.push(match value {
                Some(v) => format!("{long}={v}"),
                None => long.to_string(),
            }),
            None => out.push(a),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalize_args;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn multi_letter_short_flags_become_long() {
        assert_eq!(
            normalize_args(v(&["ember", "-ctk", "q8_0", "-fa=on", "-p", "-ctv"])),
            v(&[
                "ember",
                "--cache-type-k",
                "q8_0",
                "--flash-attn=on",
                "-p",
                "--cache-type-v"
            ])
        );
        assert_eq!(
            normalize_args(v(&["ember", "--", "-ctk"])),
            v(&["ember", "--", "-ctk"])
        );
    }
}
