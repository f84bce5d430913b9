//! clap definitions, as parsed (see `config` for the validated form).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("EMBER_GIT_REV"),
    ", ",
    env!("EMBER_PROFILE"),
    ", ",
    env!("EMBER_TARGET"),
    ")\nbackends: ",
    env!("EMBER_BACKENDS"),
    "\nggml ",
    env!("EMBER_GGML_VERSION"),
    " (llama-cpp-sys-2 0.1.161), CPU flags: ",
    env!("EMBER_CPU_FLAGS"),
);

/// The text after the options in `--help`: exit codes, defaults, and the architectures
/// Ember runs (from [`Arch::TABLE`](crate::model::Arch::TABLE)).
fn after_help() -> String {
    format!(
        "Exit codes: 0 success, 1 runtime error, 2 usage error, 130 interrupted (SIGINT), 143 SIGTERM.\n\
         Without a prompt on a terminal, the chat REPL starts (ember chat).\n\
         Without -m, the default model from `models/fetch-default` is used.\n\
         Architectures (general.architecture): {}.",
        crate::model::Arch::names()
    )
}

#[derive(Parser, Debug)]
#[command(
    name = "ember",
    version = VERSION,
    about = "Run GGUF language models: one-shot prompts, a chat REPL, scripting, perplexity, benchmarks",
    args_conflicts_with_subcommands = true,
    disable_version_flag = true,
    after_help = after_help()
)]
pub struct Cli {
    /// Print the version, the backends compiled in and the devices found, then exit.
    #[arg(short = 'V', long = "version")]
    pub version: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

impl Cli {
    /// The `--rpc` servers of the command (none for the commands without a model).
    pub fn rpc_servers(&self) -> &[String] {
        match &self.command {
            Some(Command::Perplexity(p)) => &p.model.devices.rpc,
            Some(Command::Bench(b)) => &b.devices.rpc,
            Some(Command::Chat(r)) => &r.model.devices.rpc,
            Some(Command::Batch(b)) => &b.model.devices.rpc,
            Some(Command::Serve(s)) => &s.model.devices.rpc,
            Some(Command::Info(_) | Command::Tokenize(_) | Command::RpcServer(_)) => &[],
            None => &self.run.model.devices.rpc,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print a model file's metadata and tensor table.
    Info(InfoArgs),
    /// Perplexity of a text file (llama.cpp's method), and KL divergence against saved logits.
    Perplexity(PerplexityArgs),
    /// Tokenize text with a model's vocabulary (a vocab-only GGUF is enough).
    Tokenize(TokenizeArgs),
    /// Benchmark prompt processing and generation (llama-bench's tests and output).
    Bench(BenchArgs),
    /// Chat with a model in an interactive prompt (the same as -cnv).
    Chat(Box<RunArgs>),
    /// Many prompts at once, for scripts: JSONL requests in (or plain lines), one JSONL result
    /// per request out, several sequences decoded together.
    Batch(Box<BatchArgs>),
    /// An OpenAI-compatible HTTP server (/v1/chat/completions, /v1/completions, /v1/models,
    /// /health) on the batch engine: concurrent requests decode together.
    Serve(Box<ServeArgs>),
    /// Serve this machine's CPU (or GPUs) to other machines' `--rpc` (ggml's RPC protocol,
    /// compatible with llama.cpp's rpc-server and --rpc).
    RpcServer(RpcServerArgs),
}

/// `ember serve`: llama-server's flag names where they exist.
#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Speculative decoding (-md FILE or --lookup): used while one greedy request is all the
    /// server runs (several requests decode batched instead).
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Address to listen on.
    #[arg(long = "host", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on.
    #[arg(long = "port", default_value_t = 8080)]
    pub port: u16,
    /// Requests decoded at once (slots); each gets an equal share of -c.
    #[arg(long = "parallel", default_value_t = 4)]
    pub parallel: u32,
    /// Requests that may wait for a slot; more get 503.
    #[arg(long = "queue", default_value_t = 64)]
    pub queue: usize,
    /// Require `Authorization: Bearer KEY` on /v1 endpoints (also EMBER_API_KEY).
    #[arg(long = "api-key", env = "EMBER_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Seconds a request may run before it is stopped (0 = no limit).
    #[arg(long = "timeout", default_value_t = 600)]
    pub timeout: u64,
    /// Largest request body, in bytes; larger ones get 413.
    #[arg(long = "max-body", default_value_t = 8 << 20)]
    pub max_body: usize,
    /// Chat template for /v1/chat/completions: a built-in name, a Jinja file, or raw (default:
    /// the model's).
    #[arg(long = "chat-template")]
    pub chat_template: Option<String>,
    #[command(flatten)]
    pub reasoning: ReasoningArgs,
    /// Tokens to generate when a request does not say (-1 = until end of generation or a full
    /// slot).
    #[arg(short = 'n', long = "n-predict", default_value_t = -1, allow_negative_numbers = true)]
    pub n_predict: i64,
    /// Batch invariance (see `ember batch --help`): on, each answer is a lone run's, bit for bit.
    #[arg(long = "invariant", default_value = "on", value_parser = ["on", "off"])]
    pub invariant: String,
    /// Sampling defaults (a request's own values win).
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

/// `ember batch`: requests from a file or stdin, results on stdout.
#[derive(Args, Debug)]
#[command(
    after_help = "Input: one JSON object per line, {\"id\": ..., \"prompt\": \"...\"} or {\"id\": ..., \"messages\": [{\"role\": ..., \"content\": ...}]},\n\
    with optional n_predict, temperature, top_k, top_p, min_p, repeat_penalty, seed, stop (a string or a list),\n\
    and one output constraint: format (\"json\" or a JSON schema), json_schema, grammar (GBNF or Lark) or response_format.\n\
    Output: one object per request, in input order: {\"id\", \"text\", \"stop_reason\", \"complete\", \"timings\"}, or {\"id\", \"error\"}.\n\
    Exit codes: 0 every request answered, 1 some failed (after all ran), 2 usage error, 130 interrupted."
)]
pub struct BatchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Read requests from FILE (default: stdin).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Each line of plain text is one prompt (its id: the line number).
    #[arg(long = "lines")]
    pub lines: bool,
    /// With --lines: each line is a user message, formatted by the chat template.
    #[arg(long = "chat", requires = "lines")]
    pub chat: bool,
    /// System prompt for --chat lines.
    #[arg(long = "system-prompt", requires = "chat")]
    pub system_prompt: Option<String>,
    /// Chat template for messages: a built-in name, a Jinja file, or raw (default: the
    /// model's).
    #[arg(long = "chat-template")]
    pub chat_template: Option<String>,
    #[command(flatten)]
    pub reasoning: ReasoningArgs,
    /// Sequences evaluated at once (-np; default: from the context size and the cores, printed
    /// with -v). Each gets an equal share of -c.
    #[arg(long = "parallel")]
    pub parallel: Option<u32>,
    /// Write each result as soon as it is done, not in input order.
    #[arg(long = "unordered")]
    pub unordered: bool,
    /// Batch invariance: on (default), each request's result is bit for bit that of a lone
    /// run; off, steps of several sequences use the fastest kernels for their size (results
    /// within rounding of a lone run's, and dependent on what else is in the batch).
    #[arg(long = "invariant", default_value = "on", value_parser = ["on", "off"])]
    pub invariant: String,
    /// Tokens to generate per request, unless it says (-1 = until end of generation or a full
    /// sequence).
    #[arg(short = 'n', long = "n-predict", default_value_t = -1, allow_negative_numbers = true)]
    pub n_predict: i64,
    /// Keep generating past end-of-generation tokens.
    #[arg(long = "ignore-eos")]
    pub ignore_eos: bool,
    /// End a request's generation at this text (repeatable), unless it gives its own.
    #[arg(long = "stop", value_name = "TEXT")]
    pub stop: Vec<String>,
    /// Show control tokens in the output.
    #[arg(long = "special")]
    pub special: bool,
    /// Treat special-token text in prompts as plain text.
    #[arg(long = "no-parse-special")]
    pub no_parse_special: bool,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// The output constraint of every request that gives none of its own.
    #[command(flatten)]
    pub format: FormatArgs,
}

/// `ember bench`: list-valued flags take comma-separated values (or repeat), and every
/// combination is measured, as llama-bench does.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Model files (repeat -m or separate with commas).
    #[arg(short = 'm', long = "model", value_delimiter = ',', required = true)]
    pub models: Vec<PathBuf>,
    /// Prompt-processing tests: tokens per prompt (0 = none).
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_delimiter = ',',
        default_value = "512"
    )]
    pub n_prompt: Vec<u32>,
    /// Generation tests: tokens generated one by one after an empty context (0 = none).
    #[arg(
        short = 'n',
        long = "n-gen",
        value_delimiter = ',',
        default_value = "128"
    )]
    pub n_gen: Vec<u32>,
    /// Repetitions of each test (after one warm-up run).
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    pub reps: u32,
    /// Batched test instead (llama-batched-bench's, -npl): sequences decoded together, e.g.
    /// 1,2,4,8,16; each gets -npp prompt tokens, then -ntg tokens one step at a time.
    #[arg(long = "n-parallel", value_delimiter = ',')]
    pub n_parallel: Vec<u32>,
    /// Batched test: prompt tokens per sequence (-npp).
    #[arg(long = "n-pp", value_delimiter = ',', default_value = "128")]
    pub n_pp: Vec<u32>,
    /// Batched test: generated tokens per sequence (-ntg).
    #[arg(long = "n-tg", value_delimiter = ',', default_value = "128")]
    pub n_tg: Vec<u32>,
    /// Batched test: batch invariance on (each sequence's logits as alone) or off (the
    /// fastest kernels for each step's size); `on,off` measures both.
    #[arg(long = "invariant", value_delimiter = ',', default_value = "on", value_parser = ["on", "off"])]
    pub invariant: Vec<String>,
    /// Batched test: draw the roofline (bandwidth and int8 compute roofs, each test a point)
    /// to this SVG file.
    #[arg(long = "plot", value_name = "FILE.svg", requires = "n_parallel")]
    pub plot: Option<PathBuf>,
    /// Threads (default: the number of available cores).
    #[arg(short = 't', long = "threads", value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// KV cache types for K.
    #[arg(long = "cache-type-k", value_delimiter = ',', default_value = "f16")]
    pub cache_type_k: Vec<String>,
    /// KV cache types for V.
    #[arg(long = "cache-type-v", value_delimiter = ',', default_value = "f16")]
    pub cache_type_v: Vec<String>,
    /// Flash attention: on, off, auto (or 1, 0, -1).
    #[arg(
        long = "flash-attn",
        value_delimiter = ',',
        default_value = "auto",
        value_enum
    )]
    pub flash_attn: Vec<FlashAttn>,
    /// Logical batch size for prompt processing.
    #[arg(short = 'b', long = "batch-size", default_value_t = 2048)]
    pub batch_size: u32,
    /// Micro-batch size: tokens per forward graph.
    #[arg(long = "ubatch-size", default_value_t = 512)]
    pub ubatch_size: u32,
    /// Output format on stdout.
    #[arg(short = 'o', long = "output", default_value = "md", value_enum)]
    pub output: BenchOutput,
    /// Skip the warm-up run before each test.
    #[arg(long = "no-warmup")]
    pub no_warmup: bool,
    /// Keep weights in the file's layout (no CPU repacking).
    #[arg(long = "no-repack")]
    pub no_repack: bool,
    /// Keep Ember's kernels wherever they run, untimed (by default each is timed against
    /// ggml's once per machine and weight shape, and the faster kept; `EMBER_TUNE=refresh`
    /// times again).
    #[arg(long = "no-tune")]
    pub no_tune: bool,
    #[command(flatten)]
    pub devices: DeviceArgs,
    /// Verbose logs on stderr.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchOutput {
    Md,
    Json,
    Jsonl,
    Csv,
}

/// Where the layers run: a local GPU, remote ggml-rpc servers, the CPU.
#[derive(Args, Debug, Clone, Default)]
pub struct DeviceArgs {
    /// Layers on the devices (GPU, --rpc servers), the last ones first, counting the output
    /// layer as the last (llama.cpp's count): a number, or `all` (as any number above the
    /// layer count, e.g. 99). Default: none without --rpc; with --rpc, every layer shared by
    /// the servers and this machine's CPU.
    #[arg(
        long = "n-gpu-layers",
        alias = "gpu-layers",
        value_name = "N|all",
        allow_negative_numbers = true,
        value_parser = crate::model::offload::parse_gpu_layers
    )]
    pub n_gpu_layers: Option<u32>,
    /// The GPU to offload to, by its index among the GPUs `ember --version` lists.
    #[arg(long = "main-gpu", default_value_t = 0)]
    pub main_gpu: usize,
    /// The devices' shares of the offloaded layers, e.g. 3,1 (llama.cpp's meaning; default: in
    /// proportion to free memory). With --rpc and no -ngl, one more share may follow for this
    /// machine's CPU.
    #[arg(
        long = "tensor-split",
        value_name = "A,B,...",
        value_parser = crate::model::offload::parse_tensor_split
    )]
    pub tensor_split: Option<crate::model::offload::TensorSplit>,
    /// ggml-rpc servers whose devices join this machine's (`ember rpc-server` or llama.cpp's
    /// rpc-server), comma-separated HOST:PORT. The protocol has no authentication: reach
    /// servers on other machines through a tunnel (see the README).
    #[arg(long = "rpc", value_name = "HOST:PORT,...", value_delimiter = ',')]
    pub rpc: Vec<String>,
}

impl DeviceArgs {
    pub fn request(&self) -> crate::model::offload::OffloadRequest {
        crate::model::offload::OffloadRequest {
            n_gpu_layers: self.n_gpu_layers,
            main_gpu: self.main_gpu,
            tensor_split: self.tensor_split,
        }
    }
}

/// `ember rpc-server`: serve this machine's devices to ggml-rpc clients (Ember's `--rpc`,
/// llama.cpp's `--rpc`).
#[derive(Args, Debug)]
pub struct RpcServerArgs {
    /// Address to listen on. The protocol has no authentication: anything but loopback lets
    /// anyone who can reach the port run code-like graphs on this machine; tunnel instead.
    #[arg(long = "host", short = 'H', default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on.
    #[arg(long = "port", short = 'p', default_value_t = 50052)]
    pub port: u16,
    /// CPU threads for the served CPU device (default: the number of available cores).
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// Memory to report to clients, in MiB (they split layers by it; default: what is free).
    #[arg(long = "mem", value_name = "MiB")]
    pub mem: Option<u64>,
    /// Keep large tensors a client sends in this folder, so the next load of the same model
    /// sends only their hashes.
    #[arg(long = "cache", value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Serve the CPU even where a GPU is found (by default a GPU build serves its GPUs).
    #[arg(long = "cpu")]
    pub cpu: bool,
    /// Verbose logs on stderr.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Model loading and evaluation settings shared by every mode.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model file (GGUF). Default: the model fetched by `models/fetch-default`.
    #[arg(short = 'm', long = "model")]
    pub model: Option<PathBuf>,
    /// Context size in tokens (0 = the model's training context).
    #[arg(short = 'c', long = "ctx-size")]
    pub ctx_size: Option<u32>,
    /// Threads for computation (default: the number of available cores).
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// Logical batch size for prompt processing.
    #[arg(short = 'b', long = "batch-size", default_value_t = 2048)]
    pub batch_size: u32,
    /// Micro-batch size: tokens per forward graph.
    #[arg(long = "ubatch-size", default_value_t = 512)]
    pub ubatch_size: u32,
    /// KV cache type for K: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl.
    #[arg(long = "cache-type-k", default_value = "f16")]
    pub cache_type_k: String,
    /// KV cache type for V (the same choices; a quantized V needs flash attention).
    #[arg(long = "cache-type-v", default_value = "f16")]
    pub cache_type_v: String,
    /// Flash attention: on, off or auto (auto = on for the CPU, as llama.cpp).
    #[arg(long = "flash-attn", default_value = "auto", value_enum)]
    pub flash_attn: FlashAttn,
    /// Sliding-window layers (Gemma 3's local layers) keep the whole context instead of only
    /// the window plus a micro-batch: more memory, but a chat can re-use any earlier prefix.
    #[arg(long = "swa-full")]
    pub swa_full: bool,
    /// Read weights into memory instead of mapping the file.
    #[arg(long = "no-mmap")]
    pub no_mmap: bool,
    /// Lock the model in RAM (no swapping).
    #[arg(long = "mlock")]
    pub mlock: bool,
    /// Keep weights in the file's layout (no CPU repacking).
    #[arg(long = "no-repack")]
    pub no_repack: bool,
    /// Keep Ember's kernels wherever they run, untimed (by default each is timed against
    /// ggml's once per machine and weight shape, and the faster kept; `EMBER_TUNE=refresh`
    /// times again).
    #[arg(long = "no-tune")]
    pub no_tune: bool,
    #[command(flatten)]
    pub devices: DeviceArgs,
    /// Verbose logs on stderr (-vv for debug).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlashAttn {
    #[value(alias = "1")]
    On,
    #[value(alias = "0")]
    Off,
    #[value(alias = "-1")]
    Auto,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt text (backslash sequences such as \n are processed, as in llama.cpp). It may
    /// start with a hyphen (`-p "--help me"` is a prompt).
    #[arg(short = 'p', long = "prompt", allow_hyphen_values = true)]
    pub prompt: Option<String>,
    /// Take backslash sequences in -p literally.
    #[arg(long = "no-escape")]
    pub no_escape: bool,
    /// Read the prompt from a file.
    #[arg(short = 'f', long = "file", conflicts_with = "prompt")]
    pub file: Option<PathBuf>,
    /// Tokens to generate (-1 = until end of generation or a full context).
    #[arg(short = 'n', long = "n-predict", default_value_t = -1, allow_negative_numbers = true)]
    pub n_predict: i64,
    /// Keep generating past end-of-generation tokens.
    #[arg(long = "ignore-eos")]
    pub ignore_eos: bool,
    /// If the prompt does not fit the context, keep its first token and its last tokens,
    /// leaving room for -n tokens (at most half the context), instead of failing.
    #[arg(long = "truncate-prompt")]
    pub truncate_prompt: bool,
    /// Show control tokens in the output.
    #[arg(long = "special")]
    pub special: bool,
    /// Treat special-token text in the prompt (e.g. <|im_start|>) as plain text.
    #[arg(long = "no-parse-special")]
    pub no_parse_special: bool,
    /// Do not print timings at the end.
    #[arg(long = "no-perf")]
    pub no_perf: bool,
    /// Print one JSON object at the end: {text, tokens, stop_reason, timings}.
    #[arg(long = "json", conflicts_with = "jsonl")]
    pub json: bool,
    /// Stream one JSON object per token ({"id", "text"}), then a final summary object.
    #[arg(long = "jsonl")]
    pub jsonl: bool,
    /// End generation when this text appears (repeatable); the text is not printed.
    #[arg(long = "stop", value_name = "TEXT")]
    pub stop: Vec<String>,
    /// llama.cpp's name for a stop string (repeatable); in the chat it ends the answer.
    #[arg(short = 'r', long = "reverse-prompt", value_name = "TEXT")]
    pub reverse_prompt: Vec<String>,
    /// Save the KV state after the prompt to FILE, and re-use the longest matching prefix of
    /// the prompt saved there on the next run.
    #[arg(long = "prompt-cache", value_name = "FILE", conflicts_with_all = ["model_draft", "lookup"])]
    pub prompt_cache: Option<PathBuf>,
    /// Use --prompt-cache without updating the file.
    #[arg(long = "prompt-cache-ro", requires = "prompt_cache")]
    pub prompt_cache_ro: bool,
    /// Interactive chat (a REPL); -p then gives the system prompt. The default when no prompt
    /// is given and stdin is a terminal.
    #[arg(long = "conversation", visible_alias = "interactive", short = 'i')]
    pub conversation: bool,
    /// Never start the chat: without a prompt, read it from stdin.
    #[arg(long = "no-conversation", conflicts_with = "conversation")]
    pub no_conversation: bool,
    /// Format the one-shot prompt as a user message with the chat template.
    #[arg(long = "chat")]
    pub chat: bool,
    /// System prompt for the chat (and for --chat).
    #[arg(long = "system-prompt", value_name = "TEXT")]
    pub system_prompt: Option<String>,
    /// Chat template: a built-in name (chatml, qwen2, llama3, gemma), a Jinja file, or "raw"
    /// for plain completion. Default: the model's own template.
    #[arg(long = "chat-template", value_name = "NAME|FILE")]
    pub chat_template: Option<String>,
    #[command(flatten)]
    pub reasoning: ReasoningArgs,
    /// In the chat, when the conversation no longer fits the context: drop the oldest turns
    /// (keeping the system prompt), or stop with an error.
    #[arg(long = "context-full", value_enum, default_value = "drop")]
    pub context_full: ContextFullPolicy,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub format: FormatArgs,
    #[command(flatten)]
    pub spec: SpecArgs,
}

/// Models that reason before they answer (Qwen3's `<think>`, gpt-oss's analysis channel): the
/// reasoning is kept off stdout.
#[derive(Args, Debug, Clone, Default)]
pub struct ReasoningArgs {
    /// Ask the model to think before answering (on) or not (off): the chat template's
    /// `enable_thinking` (Qwen3, SmolLM3). Default: the template's own default. gpt-oss always
    /// reasons; off asks it for low effort.
    #[arg(long = "reasoning", value_name = "on|off", value_parser = ["on", "off"])]
    pub reasoning: Option<String>,
    /// How hard a model reasons (gpt-oss's `reasoning_effort`): low, medium or high.
    #[arg(long = "reasoning-effort", value_name = "LEVEL", value_parser = ["low", "medium", "high"])]
    pub reasoning_effort: Option<String>,
    /// Write the model's reasoning to stderr as it comes (by default it is not shown; stdout
    /// has only the answer). With --json/--jsonl it is the `reasoning` field either way.
    #[arg(long = "show-reasoning")]
    pub show_reasoning: bool,
}

impl ReasoningArgs {
    /// What the chat template is told.
    pub fn template_vars(&self) -> crate::chat::Reasoning {
        let off = self.reasoning.as_deref() == Some("off");
        crate::chat::Reasoning {
            enable_thinking: self.reasoning.as_deref().map(|r| r == "on"),
            effort: self
                .reasoning_effort
                .clone()
                .or_else(|| off.then(|| "low".to_string())),
        }
    }
}

/// Structured output: at most one of these constrains what is generated.
#[derive(Args, Debug, Clone, Default)]
pub struct FormatArgs {
    /// Constrain the output to a grammar: GBNF (llama.cpp's format, with a `root` rule) or
    /// Lark (llguidance's syntax, with a `start` rule).
    #[arg(long = "grammar", value_name = "TEXT", group = "constraint")]
    pub grammar: Option<String>,
    /// Constrain the output to a grammar file: .gbnf (GBNF), .lark (Lark) or .json (a JSON
    /// schema).
    #[arg(long = "grammar-file", value_name = "FILE", group = "constraint")]
    pub grammar_file: Option<PathBuf>,
    /// Constrain the output to JSON valid under this JSON schema.
    #[arg(
        short = 'j',
        long = "json-schema",
        value_name = "SCHEMA",
        group = "constraint"
    )]
    pub json_schema: Option<String>,
    /// Constrain the output to JSON valid under the schema in FILE.
    #[arg(long = "json-schema-file", value_name = "FILE", group = "constraint")]
    pub json_schema_file: Option<PathBuf>,
    /// Constrain the output to one JSON object (any keys and values).
    #[arg(long = "format", value_name = "json", value_parser = ["json"], group = "constraint")]
    pub format: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContextFullPolicy {
    Drop,
    Error,
}

/// Speculative decoding: a draft model (-md) or prompt lookup (--lookup).
#[derive(Args, Debug, Clone)]
pub struct SpecArgs {
    /// Draft model for speculative decoding (same vocabulary as the target).
    #[arg(long = "model-draft", value_name = "FILE")]
    pub model_draft: Option<PathBuf>,
    /// Draft by looking the last n-gram up in the prompt and the text so far (no draft model).
    #[arg(long = "lookup", conflicts_with = "model_draft")]
    pub lookup: bool,
    /// Longest n-gram prompt lookup matches (shorter ones down to 2 are tried after it).
    #[arg(long = "lookup-ngram", default_value_t = 3)]
    pub lookup_ngram: usize,
    /// Most tokens drafted per step.
    #[arg(long = "draft-max", alias = "draft", default_value_t = 16)]
    pub draft_max: usize,
    /// Fewest drafted tokens worth verifying.
    #[arg(long = "draft-min", default_value_t = 0)]
    pub draft_min: usize,
    /// Stop drafting when the draft model's top probability falls below this.
    #[arg(long = "draft-p-min", default_value_t = 0.75)]
    pub draft_p_min: f32,
    /// Always draft --draft-max tokens (no cost model), for experiments.
    #[arg(long = "spec-fixed")]
    pub spec_fixed: bool,
    /// KV cache type for the draft model's K.
    #[arg(long = "cache-type-k-draft", default_value = "f16")]
    pub cache_type_k_draft: String,
    /// KV cache type for the draft model's V.
    #[arg(long = "cache-type-v-draft", default_value = "f16")]
    pub cache_type_v_draft: String,
    /// Threads for the draft model (default: --threads).
    #[arg(long = "threads-draft")]
    pub threads_draft: Option<usize>,
}

#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Temperature (0 = greedy).
    #[arg(long = "temp", default_value_t = 0.8)]
    pub temp: f32,
    /// Top-k sampling (0 = off).
    #[arg(long = "top-k", default_value_t = 40)]
    pub top_k: i32,
    /// Top-p (nucleus) sampling (1 = off).
    #[arg(long = "top-p", default_value_t = 0.95)]
    pub top_p: f32,
    /// Min-p sampling (0 = off).
    #[arg(long = "min-p", default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalty for repeated tokens (1 = off).
    #[arg(long = "repeat-penalty", default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// How many recent tokens the repeat penalty looks at (0 = off, -1 = context size).
    #[arg(
        long = "repeat-last-n",
        default_value_t = 64,
        allow_negative_numbers = true
    )]
    pub repeat_last_n: i32,
    /// Random seed (default: random).
    #[arg(short = 's', long = "seed")]
    pub seed: Option<u64>,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Model file (GGUF).
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Context size for the KV cache figures (0 = the model's training context).
    #[arg(short = 'c', long = "ctx-size", default_value_t = 4096)]
    pub ctx_size: u32,
    /// KV cache type for K, for the KV cache figures.
    #[arg(long = "cache-type-k", default_value = "f16")]
    pub cache_type_k: String,
    /// KV cache type for V, for the KV cache figures.
    #[arg(long = "cache-type-v", default_value = "f16")]
    pub cache_type_v: String,
    /// Micro-batch size (sliding-window layers keep the window plus one micro-batch).
    #[arg(long = "ubatch-size", default_value_t = 512)]
    pub ubatch_size: u32,
    /// Sliding-window layers keep the whole context (as `--swa-full` when running).
    #[arg(long = "swa-full")]
    pub swa_full: bool,
}

#[derive(Args, Debug)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Text file to score.
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Score only the first N chunks.
    #[arg(long = "chunks")]
    pub chunks: Option<usize>,
    /// llama.cpp saved-logits file: written, or read with --kl-divergence.
    #[arg(long = "kl-divergence-base", value_name = "FILE")]
    pub kl_divergence_base: Option<PathBuf>,
    /// Compare against the logits in --kl-divergence-base instead of writing them.
    #[arg(long = "kl-divergence", requires = "kl_divergence_base")]
    pub kl_divergence: bool,
    /// Run an f16 cache and the chosen -ctk/-ctv over the same chunks and compare them: PPL of
    /// each, ΔPPL, mean KLD, same top token.
    #[arg(long = "kv-compare", conflicts_with_all = ["kl_divergence", "kl_divergence_base"])]
    pub kv_compare: bool,
    /// Print the final figures as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct TokenizeArgs {
    /// Model or vocab-only file (GGUF). Default: the model fetched by `models/fetch-default`.
    #[arg(short = 'm', long = "model")]
    pub model: Option<PathBuf>,
    /// Text to tokenize (default: read stdin); it may start with a hyphen.
    #[arg(short = 'p', long = "prompt", allow_hyphen_values = true)]
    pub prompt: Option<String>,
    /// Read the text from a file.
    #[arg(short = 'f', long = "file", conflicts_with = "prompt")]
    pub file: Option<PathBuf>,
    /// Read the text from stdin (the default without -p or -f).
    #[arg(long = "stdin", conflicts_with_all = ["prompt", "file"])]
    pub stdin: bool,
    /// Print only the ids, as one list: [1, 2, 3] (llama-tokenize --ids).
    #[arg(long = "ids", conflicts_with = "json")]
    pub ids: bool,
    /// Print JSON: {"n_tokens": N, "tokens": [{"id": ID, "piece": TEXT}, ...]}.
    #[arg(long = "json")]
    pub json: bool,
    /// Do not add BOS even if the model asks for it.
    #[arg(long = "no-bos")]
    pub no_bos: bool,
    /// Treat special-token text (e.g. <|im_start|>) as plain text.
    #[arg(long = "no-parse-special")]
    pub no_parse_special: bool,
    /// Also print the number of tokens.
    #[arg(long = "show-count")]
    pub show_count: bool,
    /// Take backslash sequences (\n, \t, \xHH, ...) literally; by default they are processed
    /// in all input, as llama-tokenize does.
    #[arg(long = "no-escape")]
    pub no_escape: bool,
    /// Verbose logs on stderr.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,
}
