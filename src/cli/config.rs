//! Validated settings, as the modes use them: the parsed flags (`args`) are checked and
//! resolved here once (ripgrep's low-args → high-args split), and the modes read only these.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use crate::generate::GenerateParams;
use crate::ggml::Type;
use crate::model::tune::TuneMode;
use crate::model::LoadOptions;
use crate::sampling::{SamplingParams, SEED_RANDOM};

use super::args::{
    ContextFullPolicy, FlashAttn, FormatArgs, ModelArgs, RunArgs, SamplingArgs, SpecArgs,
};
use crate::constrain::Format;

/// A problem with the command line (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// File name of the default model, fetched by `models/fetch-default`.
pub const DEFAULT_MODEL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The context a mode asks for; [`ContextSize::resolve`] turns it into tokens once the model's
/// training context is known. This is the one place the context size is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContextSize {
    /// The model's training context (`-c 0`).
    Trained,
    /// This many tokens, but no more than the model was trained on (generation: one-shot and
    /// the chat, whose default is [`GENERATE_CTX`]).
    AtMost(u32),
    /// Exactly this many tokens, even past the training context, which only draws a warning
    /// (perplexity and bench measure what was asked; a draft model shares its target's).
    Exactly(u32),
}

/// llama.cpp's default context for generation (one-shot and chat).
pub const GENERATE_CTX: u32 = 4096;
/// llama-perplexity's usual context.
pub const PERPLEXITY_CTX: u32 = 512;

impl ContextSize {
    /// `-c N` of one-shot runs and the chat: 0 = the training context; more is capped at it.
    pub fn generate(flag: Option<u32>) -> ContextSize {
        match flag.unwrap_or(GENERATE_CTX) {
            0 => ContextSize::Trained,
            n => ContextSize::AtMost(n),
        }
    }

    /// A context of exactly `n` tokens (0 = the training context).
    pub fn exactly(n: u32) -> ContextSize {
        match n {
            0 => ContextSize::Trained,
            n => ContextSize::Exactly(n),
        }
    }

    /// The context in tokens (at least 1) for a model trained on `n_ctx_train` tokens.
    pub fn resolve(self, n_ctx_train: u32) -> u32 {
        let n = match self {
            ContextSize::Trained | ContextSize::AtMost(0) | ContextSize::Exactly(0) => n_ctx_train,
            ContextSize::AtMost(n) => n.min(n_ctx_train.max(1)),
            ContextSize::Exactly(n) => n,
        };
        n.max(1)
    }
}

#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub path: PathBuf,
    /// The context asked for; `n_ctx.resolve(hp.n_ctx_train)` gives its tokens.
    pub n_ctx: ContextSize,
    pub n_threads: usize,
    pub n_batch: u32,
    pub n_ubatch: u32,
    pub type_k: Type,
    pub type_v: Type,
    pub flash_attn: bool,
    /// How the flash-attention setting was chosen, for the verbose report.
    pub flash_attn_why: &'static str,
    /// Sliding-window layers keep the whole context (no ring).
    pub swa_full: bool,
    pub load: LoadOptions,
    pub mlock: bool,
    pub verbose: u8,
}

/// `-t`: at least 1; by default the number of available cores.
pub fn threads(flag: Option<usize>) -> Result<usize, UsageError> {
    match flag {
        Some(0) => Err(UsageError("--threads must be at least 1".into())),
        Some(t) => Ok(t),
        None => Ok(std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(4)),
    }
}

/// KV cache types users may choose.
pub const CACHE_TYPES: &[&str] = &[
    "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl",
];

pub fn cache_type(flag: &str, name: &str) -> Result<Type, UsageError> {
    let ty = match name.to_ascii_lowercase().as_str() {
        "f32" => Type::F32,
        "f16" => Type::F16,
        "bf16" => Type::BF16,
        "q8_0" => Type::Q8_0,
        "q4_0" => Type::Q4_0,
        "q4_1" => Type::Q4_1,
        "q5_0" => Type::Q5_0,
        "q5_1" => Type::Q5_1,
        "iq4_nl" => Type::IQ4_NL,
        _ => {
            return Err(UsageError(format!(
                "{flag}: unknown cache type '{name}' (choose from {})",
                CACHE_TYPES.join(", ")
            )))
        }
    };
    Ok(ty)
}

/// Whether attention runs through ggml's flash-attention op, and why (for `-v`).
pub fn flash_attn_choice(fa: FlashAttn, type_v: Type) -> Result<(bool, &'static str), UsageError> {
    // Without flash attention V is stored transposed (one row per channel), which a
    // block-quantized type cannot be; ggml's flash-attention op reads V by rows instead.
    Ok(match fa {
        FlashAttn::On => (true, "on"),
        FlashAttn::Auto if type_v.is_quantized() => {
            (true, "on (auto: the quantized V cache needs it)")
        }
        FlashAttn::Auto => (true, "on (auto: the CPU backend supports it)"),
        FlashAttn::Off if type_v.is_quantized() => {
            return Err(UsageError(format!(
                "--cache-type-v {type_v} needs flash attention (a quantized V cannot be stored transposed): use --flash-attn on or auto, or a float V type (f16, bf16, f32)"
            )))
        }
        FlashAttn::Off => (false, "off"),
    })
}

impl ModelConfig {
    /// These settings with the context fixed to its tokens for a model trained on
    /// `n_ctx_train` tokens, as sessions are made (and a draft model shares its target's).
    pub fn resolved(&self, n_ctx_train: u32) -> ModelConfig {
        ModelConfig {
            n_ctx: ContextSize::Exactly(self.n_ctx.resolve(n_ctx_train)),
            ..self.clone()
        }
    }

    /// The model flags, validated; `n_ctx` is the context the mode asks for (it knows `-c`'s
    /// default and whether the training context caps it).
    pub fn from_args(a: &ModelArgs, n_ctx: ContextSize) -> Result<ModelConfig, UsageError> {
        let path = match &a.model {
            Some(p) => p.clone(),
            None => default_model_path()?,
        };
        let type_k = cache_type("--cache-type-k", &a.cache_type_k)?;
        let type_v = cache_type("--cache-type-v", &a.cache_type_v)?;
        let (flash_attn, flash_attn_why) = flash_attn_choice(a.flash_attn, type_v)?;
        if a.ubatch_size == 0 || a.batch_size == 0 {
            return Err(UsageError(
                "--batch-size and --ubatch-size must be positive".into(),
            ));
        }
        let n_threads = threads(a.threads)?;
        Ok(ModelConfig {
            path,
            n_ctx,
            n_threads,
            n_batch: a.batch_size,
            n_ubatch: a.ubatch_size.min(a.batch_size),
            type_k,
            type_v,
            flash_attn,
            flash_attn_why,
            swa_full: a.swa_full,
            load: LoadOptions {
                mmap: !a.no_mmap,
                repack: !a.no_repack,
                offload: a.devices.request(),
                tune: TuneMode::from_flags(a.no_tune),
                threads: n_threads,
            },
            mlock: a.mlock,
            verbose: a.verbose,
        })
    }
}

/// How a one-shot run writes its answer on stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// The text as it is generated, ending with a newline.
    Text,
    /// One JSON object at the end (`--json`).
    Json,
    /// One JSON object per token, then a summary (`--jsonl`).
    Jsonl,
}

/// Which front `ember` (or `ember chat`) runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunMode {
    /// One prompt, one answer.
    OneShot,
    /// The chat REPL.
    Chat,
}

/// Where a one-shot prompt comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PromptSource {
    /// `-p TEXT`, its backslash sequences already processed (unless `--no-escape`).
    Text(String),
    /// `-f FILE` (data: taken as it is).
    File(PathBuf),
    /// Standard input (a terminal there is a usage error when the prompt is read).
    Stdin,
}

/// `--prompt-cache FILE [--prompt-cache-ro]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromptCacheConfig {
    pub path: PathBuf,
    /// Read the file, never update it.
    pub read_only: bool,
}

/// Everything one-shot runs and the chat need, validated once from [`RunArgs`]; the modes read
/// only this.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub mode: RunMode,
    pub model: ModelConfig,
    /// The one-shot prompt (the chat reads its messages from stdin instead).
    pub prompt: PromptSource,
    /// The system prompt: `-sys`, and in the chat `-p` when there is no `-sys` (as llama.cpp).
    pub system_prompt: Option<String>,
    /// `--chat-template`: a built-in name, a Jinja file, or `raw`/`none`.
    pub chat_template: Option<String>,
    /// `--chat`: the one-shot prompt goes through the chat template as a user message.
    pub chat_prompt: bool,
    /// `--reasoning`, `--reasoning-effort`: what the chat template is told.
    pub reasoning: crate::chat::Reasoning,
    /// `--show-reasoning`: the model's reasoning on stderr.
    pub show_reasoning: bool,
    pub context_full: ContextFullPolicy,
    pub sampling: SamplingParams,
    /// `-n` and `--ignore-eos` (the chat's `/set n-predict` changes its copy).
    pub generate: GenerateParams,
    pub truncate_prompt: bool,
    /// Show control tokens in the output.
    pub special: bool,
    /// Special-token text in the prompt becomes special tokens.
    pub parse_special: bool,
    pub output: OutputFormat,
    /// `--stop` then `-r` strings, in that order.
    pub stops: Vec<String>,
    pub prompt_cache: Option<PromptCacheConfig>,
    /// Print timings on stderr at the end.
    pub perf: bool,
    /// Speculative decoding flags (validated when the drafter is set up).
    pub spec: SpecArgs,
    /// Structured output: what every answer must satisfy.
    pub format: Option<Format>,
}

/// The output constraint the flags ask for, compiled once so that a bad grammar or schema is a
/// usage error before the model loads.
pub fn output_format(a: &FormatArgs) -> Result<Option<Format>, UsageError> {
    let f = if let Some(g) = &a.grammar {
        Format::grammar(g, "--grammar", false)
    } else if let Some(path) = &a.grammar_file {
        Format::file(path)
    } else if let Some(s) = &a.json_schema {
        Format::schema(s, "--json-schema")
    } else if let Some(path) = &a.json_schema_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
        Format::schema(&text, &path.display().to_string())
    } else if a.format.is_some() {
        Ok(Format::AnyJson)
    } else {
        return Ok(None);
    };
    f.map(Some).map_err(|e| UsageError(e.to_string()))
}

impl RunConfig {
    /// `chat_command`: `ember chat`; otherwise the chat runs when [`wants_chat`] says so.
    pub fn from_args(a: &RunArgs, chat_command: bool) -> Result<RunConfig, UsageError> {
        let mode = if chat_command || wants_chat(a) {
            RunMode::Chat
        } else {
            RunMode::OneShot
        };
        if mode == RunMode::Chat {
            if a.json || a.jsonl || a.prompt_cache.is_some() {
                return Err(UsageError(
                    "--json, --jsonl and --prompt-cache are for one-shot runs, not the chat (use /save and /load)".into(),
                ));
            }
            if a.spec.model_draft.is_some() || a.spec.lookup {
                log::warn!(
                    "speculative decoding (-md, --lookup) is for one-shot runs; the chat decodes plainly"
                );
            }
        }
        let model = ModelConfig::from_args(&a.model, ContextSize::generate(a.model.ctx_size))?;
        let prompt = match (&a.prompt, &a.file) {
            (Some(p), _) if a.no_escape => PromptSource::Text(p.clone()),
            (Some(p), _) => PromptSource::Text(super::process_escapes(p)),
            (None, Some(f)) => PromptSource::File(f.clone()),
            (None, None) => PromptSource::Stdin,
        };
        let system_prompt = match mode {
            // With -cnv, -p gives the system prompt, as in llama.cpp (taken as typed).
            RunMode::Chat => a.system_prompt.clone().or_else(|| a.prompt.clone()),
            RunMode::OneShot => a.system_prompt.clone(),
        };
        let output = if a.json {
            OutputFormat::Json
        } else if a.jsonl {
            OutputFormat::Jsonl
        } else {
            OutputFormat::Text
        };
        Ok(RunConfig {
            mode,
            model,
            prompt,
            system_prompt,
            chat_template: a.chat_template.clone(),
            chat_prompt: a.chat,
            reasoning: a.reasoning.template_vars(),
            show_reasoning: a.reasoning.show_reasoning,
            context_full: a.context_full,
            sampling: sampling_params(&a.sampling),
            generate: GenerateParams {
                n_predict: a.n_predict,
                ignore_eos: a.ignore_eos,
            },
            truncate_prompt: a.truncate_prompt,
            special: a.special,
            parse_special: !a.no_parse_special,
            output,
            stops: a.stop.iter().chain(&a.reverse_prompt).cloned().collect(),
            prompt_cache: a.prompt_cache.as_ref().map(|path| PromptCacheConfig {
                path: path.clone(),
                read_only: a.prompt_cache_ro,
            }),
            perf: !a.no_perf,
            spec: a.spec.clone(),
            format: output_format(&a.format)?,
        })
    }
}

/// Whether the command line asks for the chat: -cnv, or no prompt and a terminal on stdin.
pub fn wants_chat(a: &RunArgs) -> bool {
    a.conversation
        || (!a.no_conversation
            && a.prompt.is_none()
            && a.file.is_none()
            && std::io::stdin().is_terminal())
}

/// The sampler settings of the flags (no seed: a random one).
pub fn sampling_params(a: &SamplingArgs) -> SamplingParams {
    SamplingParams {
        temp: a.temp,
        top_k: a.top_k,
        top_p: a.top_p,
        min_p: a.min_p,
        repeat_penalty: a.repeat_penalty,
        repeat_last_n: a.repeat_last_n,
        seed: a.seed.unwrap_or(SEED_RANDOM),
        ..SamplingParams::default()
    }
}

/// The default model: `$EMBER_MODEL`, else `models/<DEFAULT_MODEL>` next to the current
/// directory or the executable's repository.
pub fn default_model_path() -> Result<PathBuf, UsageError> {
    if let Some(p) = std::env::var_os("EMBER_MODEL") {
        return Ok(PathBuf::from(p));
    }
    let mut candidates = vec![PathBuf::from("models").join(DEFAULT_MODEL)];
    if let Ok(exe) = std::env::current_exe() {
        // target/{release,debug}/ember → repository root
        for up in exe.ancestors().skip(1).take(4) {
            candidates.push(up.join("models").join(DEFAULT_MODEL));
        }
    }
    candidates.into_iter().find(|p| Path::new(p).is_file()).ok_or_else(|| {
        UsageError(format!(
            "no model given (-m FILE) and the default model models/{DEFAULT_MODEL} is missing: run `models/fetch-default` to fetch it"
        ))
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{normalize_args, Cli};

    fn run_config(args: &[&str], chat_command: bool) -> Result<RunConfig, UsageError> {
        let argv = normalize_args(
            ["ember", "-m", "model.gguf"]
                .iter()
                .chain(args)
                .map(|s| s.to_string()),
        );
        RunConfig::from_args(&Cli::parse_from(argv).run, chat_command)
    }

    #[test]
    fn context_size_is_resolved_in_one_place() {
        // generation: the default, capped at the training context; 0 = the training context
        assert_eq!(ContextSize::generate(None).resolve(8192), GENERATE_CTX);
        assert_eq!(ContextSize::generate(None).resolve(2048), 2048);
        assert_eq!(ContextSize::generate(Some(0)).resolve(2048), 2048);
        assert_eq!(ContextSize::generate(Some(100_000)).resolve(2048), 2048);
        // measurements get what they ask for, past the training context too
        assert_eq!(ContextSize::exactly(4096).resolve(2048), 4096);
        assert_eq!(ContextSize::exactly(0).resolve(2048), 2048);
        // never an empty context, even from a file that claims a training context of 0
        assert_eq!(ContextSize::Trained.resolve(0), 1);
        assert_eq!(ContextSize::generate(None).resolve(0), 1);
    }

    #[test]
    fn run_config_resolves_the_flags_once() {
        let c = run_config(
            &[
                "-p", r"a\nb", "--stop", "x", "-r", "y", "--stop", "z", "-n", "7", "--json",
            ],
            false,
        )
        .unwrap();
        assert_eq!(c.mode, RunMode::OneShot);
        assert_eq!(c.prompt, PromptSource::Text("a\nb".into()));
        assert_eq!(c.stops, ["x", "z", "y"]);
        assert_eq!(c.generate.n_predict, 7);
        assert_eq!(c.output, OutputFormat::Json);
        assert_eq!(c.model.n_ctx, ContextSize::AtMost(GENERATE_CTX));
        assert_eq!(c.system_prompt, None);

        let c = run_config(&["-p", r"a\nb", "--no-escape"], false).unwrap();
        assert_eq!(c.prompt, PromptSource::Text(r"a\nb".into()));
        let c = run_config(&["-f", "prompt.txt", "-c", "0"], false).unwrap();
        assert_eq!(c.prompt, PromptSource::File("prompt.txt".into()));
        assert_eq!(c.model.n_ctx, ContextSize::Trained);
    }

    #[test]
    fn the_chat_takes_its_system_prompt_from_p_and_refuses_one_shot_outputs() {
        let c = run_config(&["-cnv", "-p", "be brief"], false).unwrap();
        assert_eq!(c.mode, RunMode::Chat);
        assert_eq!(c.system_prompt.as_deref(), Some("be brief"));
        let c = run_config(&["-p", "be brief", "-sys", "terse"], true).unwrap();
        assert_eq!(c.system_prompt.as_deref(), Some("terse"));
        for flag in [&["--json"][..], &["--jsonl"], &["--prompt-cache", "x.bin"]] {
            let e = run_config(flag, true).unwrap_err();
            assert!(e.0.contains("one-shot runs"), "{}", e.0);
        }
    }
}
