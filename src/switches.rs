//! Ember's environment switches, read once and only here: the kernels' ([`KernelSwitches`],
//! which decide weight routes in `ggml::kernels::route`) and the engine's debugging and
//! experiment switches ([`Switches`]). Each is for comparing or inspecting, never needed to run.

use std::ffi::OsString;
use std::sync::OnceLock;

/// The engine's switches besides the kernels'.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Switches {
    /// Graphs are re-used between micro-batches of the same shape (`EMBER_NO_GRAPH_REUSE`
    /// unset).
    pub graph_reuse: bool,
    /// Every computed graph node is printed on stderr (`EMBER_DEBUG_TENSORS` set), to set
    /// beside llama.cpp's `llama-eval-callback`.
    pub debug_tensors: bool,
    /// Quantized caches store Hadamard-rotated heads (`EMBER_ATTN_ROT_DISABLE` unset, empty or
    /// 0; llama.cpp's `LLAMA_ATTN_ROT_DISABLE`).
    pub attn_rot: bool,
    /// Decode steps attend through Ember's attention op (`EMBER_NO_ATTN_OP` unset), where it
    /// runs (`ggml::kernels::attn`), and attention over Q8_0 and Q4_0 caches through its op
    /// for them (`ggml::kernels::attn_quant`); set: ggml's flash attention, one op per sequence. Both
    /// give the same results.
    pub attn_op: bool,
    /// `EMBER_TUNE=off`, `on` or `refresh`: kernel routes not tuned, tuned with the cache
    /// (a debug build's default is off), or measured again (`crate::model::tune`); unset or
    /// anything else, the default.
    pub tune: Option<crate::model::tune::TuneMode>,
}

impl Switches {
    /// The switches as this process's environment sets them (read once).
    pub fn get() -> &'static Switches {
        static SWITCHES: OnceLock<Switches> = OnceLock::new();
        SWITCHES.get_or_init(|| Switches::from(|k: &str| std::env::var_os(k)))
    }

    /// The switches an environment (`var(name)`) sets.
    pub fn from(var: impl Fn(&str) -> Option<OsString>) -> Switches {
        Switches {
            graph_reuse: var("EMBER_NO_GRAPH_REUSE").is_none(),
            debug_tensors: var("EMBER_DEBUG_TENSORS").is_some(),
            attn_rot: !var("EMBER_ATTN_ROT_DISABLE").is_some_and(|v| v != "0" && !v.is_empty()),
            attn_op: var("EMBER_NO_ATTN_OP").is_none(),
            tune: match var("EMBER_TUNE").as_ref().and_then(|v| v.to_str()) {
                Some("off" | "0") => Some(crate::model::tune::TuneMode::Off),
                Some("refresh") => Some(crate::model::tune::TuneMode::Refresh),
                Some("on" | "1") => Some(crate::model::tune::TuneMode::Cached),
                _ => None,
            },
        }
    }
}

/// The kernels' switches in the environment, read once: set to compare Ember's ops
/// against ggml's (`EMBER_NO_GEMV=1`, `EMBER_NO_TILED=1`, `EMBER_NO_WIDE=1`,
/// `EMBER_NO_LANES=1`), and ggml's own
/// `GGML_CPU_TILED_MM`, which changes what the Q6_K op has to reproduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelSwitches {
    /// Ember's ops may run (`EMBER_NO_GEMV` unset; set, none does, decode or prompt).
    pub ember_ops: bool,
    /// Ember's prompt ops may run: tile, Q4_K prompt, Q6_K (`EMBER_NO_TILED` unset).
    pub prompt_ops: bool,
    /// The tile op may use its 512-bit kernels, and the decode op its 512-bit kernels over
    /// several columns where they are faster (`EMBER_NO_WIDE` unset); all give the same
    /// results.
    pub wide_tiles: bool,
    /// The decode op may use its one-column-per-lane kernels over several columns where they
    /// are faster (`EMBER_NO_LANES` unset); the same results.
    pub lane_columns: bool,
    /// ggml's tiled matrix path is on (`GGML_CPU_TILED_MM` unset or, read as ggml reads it
    /// with `atoi`, not 0); off, ggml multiplies Q6_K weights by `vec_dot`.
    pub ggml_tiled_mm: bool,
}

impl KernelSwitches {
    /// All of Ember's ops on, ggml's defaults.
    pub const ALL_ON: KernelSwitches = KernelSwitches {
        ember_ops: true,
        prompt_ops: true,
        wide_tiles: true,
        lane_columns: true,
        ggml_tiled_mm: true,
    };

    /// The switches as this process's environment sets them (read once).
    pub fn get() -> &'static KernelSwitches {
        static SWITCHES: OnceLock<KernelSwitches> = OnceLock::new();
        SWITCHES.get_or_init(|| KernelSwitches::from(|k: &str| std::env::var_os(k)))
    }

    /// The switches an environment (`var(name)`) sets.
    pub fn from(var: impl Fn(&str) -> Option<OsString>) -> KernelSwitches {
        KernelSwitches {
            ember_ops: var("EMBER_NO_GEMV").is_none(),
            prompt_ops: var("EMBER_NO_TILED").is_none(),
            wide_tiles: var("EMBER_NO_WIDE").is_none(),
            lane_columns: var("EMBER_NO_LANES").is_none(),
            ggml_tiled_mm: var("GGML_CPU_TILED_MM")
                .is_none_or(|v| atoi_nonzero(&v.to_string_lossy())),
        }
    }
}

/// Whether C's `atoi(s)` is not 0, as ggml reads its switches: leading blanks, a sign, then the
/// digits up to the first other character.
fn atoi_nonzero(s: &str) -> bool {
    let t = s.trim_start();
    let t = t.strip_prefix(['+', '-']).unwrap_or(t);
    t.chars().take_while(char::is_ascii_digit).any(|c| c != '0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_read_as_atoi() {
        for (s, on) in [
            ("1", true),
            (" 2x", true),
            ("-1", true),
            ("0", false),
            ("", false),
        ] {
            assert_eq!(atoi_nonzero(s), on, "{s:?}");
        }
        for s in ["00", "abc", "+-1", "x1"] {
            assert!(!atoi_nonzero(s), "{s:?}");
        }
    }

    #[test]
    fn switches_come_from_the_environment_given() {
        let env = |set: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                set.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        assert_eq!(KernelSwitches::from(env(&[])), KernelSwitches::ALL_ON);
        let s = KernelSwitches::from(env(&[
            ("EMBER_NO_GEMV", "1"),
            ("EMBER_NO_TILED", ""),
            ("EMBER_NO_WIDE", "0"),
            ("EMBER_NO_LANES", "1"),
            ("GGML_CPU_TILED_MM", "0"),
        ]));
        assert_eq!(
            s,
            KernelSwitches {
                ember_ops: false,
                prompt_ops: false,
                wide_tiles: false,
                lane_columns: false,
                ggml_tiled_mm: false
            }
        );
        assert!(KernelSwitches::from(env(&[("GGML_CPU_TILED_MM", "1")])).ggml_tiled_mm);
    }

    #[test]
    fn engine_switches_come_from_the_environment_given() {
        let none = |_: &str| None;
        assert_eq!(
            Switches::from(none),
            Switches {
                graph_reuse: true,
                debug_tensors: false,
                attn_rot: true,
                attn_op: true,
                tune: None
            }
        );
        let all = |k: &str| {
            Some(OsString::from(if k == "EMBER_ATTN_ROT_DISABLE" {
                "1"
            } else {
                ""
            }))
        };
        assert_eq!(
            Switches::from(all),
            Switches {
                graph_reuse: false,
                debug_tensors: true,
                attn_rot: false,
                attn_op: false,
                tune: None
            }
        );
        let zero = |k: &str| (k == "EMBER_ATTN_ROT_DISABLE").then(|| OsString::from("0"));
        assert!(Switches::from(zero).attn_rot);
        use crate::model::tune::TuneMode;
        let tune = |v: &'static str| move |k: &str| (k == "EMBER_TUNE").then(|| OsString::from(v));
        assert_eq!(Switches::from(tune("off")).tune, Some(TuneMode::Off));
        assert_eq!(
            Switches::from(tune("refresh")).tune,
            Some(TuneMode::Refresh)
        );
        assert_eq!(Switches::from(tune("on")).tune, Some(TuneMode::Cached));
        assert_eq!(Switches::from(tune("yes")).tune, None);
    }
}
