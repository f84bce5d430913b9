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
    ("-mg", "--main-gpu"),
    ("-ts", "--tensor-split"),
    ("-cnv", "--conversation"),
    ("-no-cnv", "--no-conversation"),
    ("-nkvo", "--no-kv-offload"),
    ("-md", "--model-draft"),
    ("-ctkd", "--cache-type-k-draft"),
    ("-ctvd", "--cache-type-v-draft"),
    ("-td", "--threads-draft"),
    ("-sys", "--system-prompt"),
    ("-np", "--parallel"),
    ("-npl", "--n-parallel"),
    ("-npp", "--n-pp"),
    ("-ntg", "--n-tg"),
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

/// llama.cpp's escape processing of prompt text (on by default there, `--no-escape` turns it
/// off): `\n`, `\r`, `\t`, `\'`, `\"`, `\\` and `\xHH` become the characters they name;
/// any other backslash stays as it is. `\xHH` may produce a byte that is not UTF-8 on its
/// own; such bytes become U+FFFD.
pub fn process_escapes(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 == b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let c = b[i + 1];
        i += 2;
        match c {
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'\'' | b'"' | b'\\' => out.push(c),
            b'x' if i + 1 < b.len() && b[i].is_ascii_hexdigit() && b[i + 1].is_ascii_hexdigit() => {
                let hex = std::str::from_utf8(&b[i..i + 2]).expect("ascii");
                out.push(u8::from_str_radix(hex, 16).expect("hex digits"));
                i += 2;
            }
            _ => out.extend([b'\\', c]),
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::{normalize_args, process_escapes};

    #[test]
    fn escapes_like_llama_cpp() {
        assert_eq!(process_escapes(r#"a\nb\tc\\d\'\""#), "a\nb\tc\\d'\"");
        assert_eq!(process_escapes(r"\x41\x4g\q\"), "A\\x4g\\q\\");
        assert_eq!(process_escapes("héllo"), "héllo");
        assert_eq!(process_escapes(r"\xff"), "\u{fffd}");
    }

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
