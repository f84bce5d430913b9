//! Pre-tokenizers of BPE vocabularies, chosen by `tokenizer.ggml.pre`.
//!
//! llama.cpp splits text with a list of regular expressions applied in turn (each one to
//! every piece left by the previous ones, keeping both matches and the text between them),
//! then maps each piece's bytes through the GPT-2 byte table (except for SPM-style BPE such
//! as Gemma 4, which works on raw UTF-8). That is exactly a `tokenizers` `Sequence` of
//! `Split(regex, Isolated)` followed by `ByteLevel` without its own regex; [`WordSplitter`]
//! does the same with `tokenizers`' regex on plain slices, for speed. The regexes are
//! llama.cpp's (`llm_tokenizer_bpe`); where llama.cpp runs a hand-written matcher for a regex
//! we give Oniguruma that regex itself.

use tokenizers::utils::SysRegex;

use super::bytes::byte_to_char;
use super::error::TokenizerError;

/// GPT-2's regex (llama.cpp matches it with `unicode_regex_split_custom_gpt2`).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Llama 3's regex with the case-insensitive contractions spelled out ASCII-only, as
/// llama.cpp adapts it (its hand-written matcher lower-cases only these letters).
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// DeepSeek LLM's letter runs: an explicit list of cased-letter ranges (from llama.cpp).
const DEEPSEEK_LLM_LETTERS: &str = r"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃{NOSP}]+";

/// Characters Unicode 16.0 added to the general categories the regexes use. Oniguruma's
/// tables are Unicode 16.0; llama.cpp's (`unicode-data.cpp`) are older and leave these
/// undefined (matched by `[^\s\p{L}\p{N}]`, never by `\p{L}`), so each `\p{X}` becomes
/// `[\p{X}&&[^new]]`. Every other code point has the same L/N/P/M/whitespace class in both.
pub(crate) const NEW_IN_16: [(&str, &str); 4] = [
    (
        "L",
        r"\x{1C89}-\x{1C8A}\x{A7CB}-\x{A7CD}\x{A7DA}-\x{A7DC}\x{105C0}-\x{105F3}\x{10D4A}-\x{10D65}\x{10D6F}-\x{10D85}\x{10EC2}-\x{10EC4}\x{11380}-\x{11389}\x{1138B}\x{1138E}\x{11390}-\x{113B5}\x{113B7}\x{113D1}\x{113D3}\x{11BC0}-\x{11BE0}\x{13460}-\x{143FA}\x{16100}-\x{1611D}\x{16D40}-\x{16D6C}\x{18CFF}\x{1E5D0}-\x{1E5ED}\x{1E5F0}",
    ),
    (
        "N",
        r"\x{10D40}-\x{10D49}\x{116D0}-\x{116E3}\x{11BF0}-\x{11BF9}\x{16130}-\x{16139}\x{16D70}-\x{16D79}\x{1CCF0}-\x{1CCF9}\x{1E5F1}-\x{1E5FA}",
    ),
    (
        "P",
        r"\x{1B4E}-\x{1B4F}\x{1B7F}\x{10D6E}\x{113D4}-\x{113D5}\x{113D7}-\x{113D8}\x{11BE1}\x{16D6D}-\x{16D6F}\x{1E5FF}",
    ),
    (
        "M",
        r"\x{897}\x{10D69}-\x{10D6D}\x{10EFC}\x{113B8}-\x{113C0}\x{113C2}\x{113C5}\x{113C7}-\x{113CA}\x{113CC}-\x{113D0}\x{113D2}\x{113E1}-\x{113E2}\x{11F5A}\x{1611E}-\x{1612F}\x{1E5EE}-\x{1E5EF}",
    ),
];

/// White space outside ASCII. llama.cpp runs regexes without `\p{..}` through `std::wregex`
/// after replacing these with U+000B, so they match `\s` but no explicit character range;
/// `{NOSP}` in our copies of those regexes marks the classes that must leave them out.
const NOSP: &str =
    r"&&[^\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]";

/// `re` as Oniguruma must see it to match what llama.cpp matches: `\p{L}`, `\p{N}`,
/// `\p{P}`, `\p{M}` limited to llama.cpp's Unicode version, `{NOSP}` expanded.
fn with_llama_cpp_categories(re: &str) -> String {
    let mut out = re.replace("{NOSP}", NOSP);
    for (cat, new) in NEW_IN_16 {
        out = out.replace(
            &format!("\\p{{{cat}}}"),
            &format!("[\\p{{{cat}}}&&[^{new}]]"),
        );
    }
    out
}

/// A pre-tokenizer family: one regex list plus the loader flags llama.cpp ties to it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum PreKind {
    /// "default" (and a missing `tokenizer.ggml.pre`).
    Default,
    /// "gpt-2", "mpt", "olmo", "phi-2", ...
    Gpt2,
    /// "smollm", "starcoder", "refact", "command-r", ...: digits split one by one, then GPT-2.
    Starcoder,
    /// "llama3", "llama-bpe", "dbrx", "smaug-bpe", ...
    Llama3,
    /// "qwen2", "stablelm2", "deepseek-r1-qwen", ...
    Qwen2,
    /// "qwen35"
    Qwen35,
    /// "falcon"
    Falcon,
    /// "deepseek-llm"
    DeepseekLlm,
    /// "deepseek-coder"
    DeepseekCoder,
    /// "gemma4" (also every `tokenizer.ggml.model = "gemma4"` vocabulary): SPM-style BPE.
    /// Spaces become `▁`, only newline runs split the text, no GPT-2 byte mapping, byte
    /// fallback to `<0xXX>` tokens, and a run of newlines that is a token stays whole.
    Gemma4,
}

/// llama.cpp's `ignore_merges` and `add_bos = true` (the Llama 3 names).
const LLAMA3_FLAGS: u8 = 1;
/// llama.cpp's `clean_spaces = false` (no clean-up of " ." etc. when detokenizing).
const RAW_SPACES: u8 = 2;

/// `tokenizer.ggml.pre` values → family and the loader flags llama.cpp sets with them.
const NAMES: &[(&str, PreKind, u8)] = &[
    ("default", PreKind::Default, 0),
    ("gpt-2", PreKind::Gpt2, 0),
    ("phi-2", PreKind::Gpt2, 0),
    ("jina-es", PreKind::Gpt2, 0),
    ("jina-de", PreKind::Gpt2, 0),
    ("gigachat", PreKind::Gpt2, 0),
    ("jina-v2-es", PreKind::Gpt2, 0),
    ("jina-v2-de", PreKind::Gpt2, 0),
    ("a.x-4.0", PreKind::Gpt2, 0),
    ("mellum", PreKind::Gpt2, 0),
    ("modern-bert", PreKind::Gpt2, 0),
    ("exaone4", PreKind::Gpt2, 0),
    ("mpt", PreKind::Gpt2, 0),
    ("olmo", PreKind::Gpt2, 0),
    ("jais", PreKind::Gpt2, 0),
    ("trillion", PreKind::Gpt2, RAW_SPACES),
    ("granite-docling", PreKind::Gpt2, RAW_SPACES),
    ("smollm", PreKind::Starcoder, RAW_SPACES),
    ("starcoder", PreKind::Starcoder, 0),
    ("refact", PreKind::Starcoder, 0),
    ("command-r", PreKind::Starcoder, RAW_SPACES),
    ("codeshell", PreKind::Starcoder, 0),
    ("exaone", PreKind::Starcoder, 0),
    ("minerva-7b", PreKind::Starcoder, 0),
    ("mellum2", PreKind::Starcoder, 0),
    ("llama3", PreKind::Llama3, LLAMA3_FLAGS),
    ("llama-v3", PreKind::Llama3, LLAMA3_FLAGS),
    ("llama-bpe", PreKind::Llama3, LLAMA3_FLAGS),
    ("falcon3", PreKind::Llama3, LLAMA3_FLAGS),
    ("falcon-h1", PreKind::Llama3, LLAMA3_FLAGS),
    ("pixtral", PreKind::Llama3, LLAMA3_FLAGS),
    ("midm-2.0", PreKind::Llama3, LLAMA3_FLAGS),
    ("lfm2", PreKind::Llama3, LLAMA3_FLAGS),
    ("jina-v5-nano", PreKind::Llama3, LLAMA3_FLAGS),
    ("dbrx", PreKind::Llama3, 0),
    ("smaug-bpe", PreKind::Llama3, 0),
    ("qwen2", PreKind::Qwen2, RAW_SPACES),
    ("deepseek-r1-qwen", PreKind::Qwen2, RAW_SPACES),
    ("kormo", PreKind::Qwen2, RAW_SPACES),
    ("f2llmv2", PreKind::Qwen2, RAW_SPACES),
    ("megrez", PreKind::Qwen2, 0),
    ("stablelm2", PreKind::Qwen2, 0),
    ("hunyuan", PreKind::Qwen2, RAW_SPACES),
    ("solar-open", PreKind::Qwen2, RAW_SPACES),
    ("qwen35", PreKind::Qwen35, RAW_SPACES),
    ("falcon", PreKind::Falcon, 0),
    ("deepseek-llm", PreKind::DeepseekLlm, RAW_SPACES),
    ("deepseek-coder", PreKind::DeepseekCoder, RAW_SPACES),
    ("gemma4", PreKind::Gemma4, 0),
    ("granite-embed-multi-311m", PreKind::Gemma4, 0),
];

/// For error messages: one name per family.
const SUPPORTED_SUMMARY: &str =
    "default, gpt-2, smollm/starcoder, llama3/llama-bpe, qwen2, qwen35, falcon, deepseek-llm, deepseek-coder, gemma4 \
     (and the llama.cpp aliases of each)";

/// Names llama.cpp knows that Ember does not implement yet (a clear error, not a fallback).
/// Some need more than a regex list: jina/roberta add SEP, chatglm drops BOS, mmbert splits
/// words at `▁`, deepseek/kimi/afmoe have their own splitters.
const KNOWN_UNSUPPORTED: &[&str] = &[
    "minicpm5",
    "deepseek-v3",
    "spark2_5",
    "youtu",
    "jais-2",
    "mmbert",
    "sarvam-moe",
    "jina-v1-en",
    "jina-v2-code",
    "roberta-bpe",
    "whitespace",
    "poro-chat",
    "chatglm-bpe",
    "glm4",
    "glm5",
    "viking",
    "tekken",
    "bloom",
    "gpt3-finnish",
    "exaone-moe",
    "chameleon",
    "gpt-4o",
    "llama4",
    "kanana2",
    "talkie",
    "granite-embed-multi-97m",
    "tiny_aya",
    "cohere2moe",
    "superbpe",
    "bailingmoe",
    "bailingmoe2",
    "llada-moe",
    "seed-coder",
    "hunyuan-dense",
    "hy_v4",
    "joyai-llm",
    "kimi-k2",
    "ufakzeka",
    "grok-2",
    "afmoe",
    "laguna",
    "minimax-m2",
];

/// A resolved `tokenizer.ggml.pre`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Pre {
    pub kind: PreKind,
    /// Use a whole pre-token as one token when the vocabulary has it, skipping the merges.
    pub ignore_merges: bool,
    /// llama.cpp's default for `add_bos` before `tokenizer.ggml.add_bos_token` is read.
    pub add_bos_default: bool,
    /// llama.cpp's `clean_spaces`: detokenizing removes the space in " ?", " 's", etc.
    pub clean_spaces: bool,
}

impl Pre {
    /// `pre` as found in the file for a "gpt2" vocabulary. Missing means "default", with the
    /// warning llama.cpp prints; an unknown or unimplemented name is an error.
    pub(crate) fn resolve(model: &str, pre: Option<&str>) -> Result<Pre, TokenizerError> {
        let name = match pre {
            None | Some("") => {
                log::warn!("tokenizer.ggml.pre is missing: using 'default'; tokenization may differ from the model's");
                "default"
            }
            Some(p) => p,
        };
        if let Some(&(_, kind, flags)) = NAMES.iter().find(|(n, _, _)| *n == name) {
            return Ok(Pre {
                kind,
                ignore_merges: flags & LLAMA3_FLAGS != 0,
                add_bos_default: flags & LLAMA3_FLAGS != 0,
                clean_spaces: flags & RAW_SPACES == 0,
            });
        }
        if KNOWN_UNSUPPORTED.contains(&name) {
            return Err(TokenizerError::UnsupportedPre {
                pre: name.to_string(),
                supported: SUPPORTED_SUMMARY.to_string(),
            });
        }
        Err(TokenizerError::UnknownPre {
            model: model.to_string(),
            pre: name.to_string(),
        })
    }
}

impl PreKind {
    /// Whether words are mapped through the GPT-2 byte table (llama.cpp's `byte_encode`).
    pub(crate) fn byte_encode(self) -> bool {
        self != PreKind::Gemma4
    }

    /// Whether spaces become `▁` before splitting (llama.cpp's `escape_whitespaces`).
    pub(crate) fn escape_whitespaces(self) -> bool {
        self == PreKind::Gemma4
    }

    fn regexes(self) -> &'static [&'static str] {
        match self {
            PreKind::Default => &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"],
            PreKind::Gpt2 => &[GPT2],
            PreKind::Starcoder => &[r"\p{N}", GPT2],
            PreKind::Llama3 => &[LLAMA3],
            PreKind::Qwen2 => &[QWEN2],
            PreKind::Qwen35 => &[QWEN35],
            PreKind::Falcon => &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, "[0-9][0-9][0-9]"],
            PreKind::DeepseekLlm => &[
                "[\r\n]",
                DEEPSEEK_LLM_LETTERS,
                r"\s?[!-/:-~！-／：-～‘-‟　-。{NOSP}]+",
                r"\s+\z", // ECMAScript `$` = end of input; Oniguruma `$` = end of line
                "[一-龥ࠀ-一가-퟿{NOSP}]+",
                r"\p{N}+",
            ],
            PreKind::DeepseekCoder => &[
                "[\r\n]",
                r"\s?\p{L}+",
                r"\s?\p{P}+",
                "[一-龥ࠀ-一가-퟿{NOSP}]+",
                r"\p{N}",
            ],
            PreKind::Gemma4 => &["[^\n]+|[\n]+"],
        }
    }
}

/// Splits text into words ready for the BPE merges (byte-level-encoded where the family is).
/// Does what a `tokenizers` `Sequence` of `Split(regex, Isolated)` + `ByteLevel` does (the
/// tests check that), with `tokenizers`' regex type, but on plain string slices: the
/// `PreTokenizedString` route tracks offsets for every byte and allocates for every piece,
/// which made it slower than llama.cpp.
pub(crate) struct WordSplitter {
    regexes: Vec<SysRegex>,
    byte_encode: bool,
}

impl WordSplitter {
    pub(crate) fn new(kind: PreKind, pre_name: &str) -> Result<Self, TokenizerError> {
        let mut regexes = Vec::new();
        for re in kind.regexes() {
            let compiled = SysRegex::new(&with_llama_cpp_categories(re)).map_err(|e| {
                TokenizerError::Regex {
                    pre: pre_name.to_string(),
                    regex: re.to_string(),
                    msg: e.to_string(),
                }
            })?;
            regexes.push(compiled);
        }
        Ok(WordSplitter {
            regexes,
            byte_encode: kind.byte_encode(),
        })
    }

    /// Calls `f` with each word of `text`, mapped through the GPT-2 byte table if the family
    /// does: each regex in turn cuts every piece left by the previous ones into its matches
    /// and the text between them.
    pub(crate) fn for_each_word(&self, text: &str, mut f: impl FnMut(&str)) {
        let mut pieces = vec![text];
        for re in &self.regexes {
            let mut next = Vec::with_capacity(pieces.len() * 2);
            for piece in pieces {
                let mut last = 0;
                for (start, end) in re.find_iter(piece) {
                    if start > last {
                        next.push(&piece[last..start]);
                    }
                    if end > start {
                        next.push(&piece[start..end]);
                    }
                    last = end;
                }
                if last < piece.len() {
                    next.push(&piece[last..]);
                }
            }
            pieces = next;
        }
        let mut mapped = String::new();
        for piece in pieces {
            if self.byte_encode {
                mapped.clear();
                mapped.extend(piece.bytes().map(byte_to_char));
                f(&mapped);
            } else {
                f(piece);
            }
        }
    }

    /// The words of `text` as `for_each_word` gives them.
    #[cfg(test)]
    pub(crate) fn split(&self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        self.for_each_word(text, |w| out.push(w.to_string()));
        out
    }
}

/// The same split done by `tokenizers`' own pre-tokenizers, to check [`WordSplitter`].
#[cfg(test)]
pub(crate) fn split_with_tokenizers(kind: PreKind, text: &str) -> Vec<String> {
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::pre_tokenizers::sequence::Sequence;
    use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
    use tokenizers::pre_tokenizers::PreTokenizerWrapper;
    use tokenizers::{
        OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer, SplitDelimiterBehavior,
    };
    let mut steps = Vec::new();
    for re in kind.regexes() {
        let pattern = SplitPattern::Regex(with_llama_cpp_categories(re));
        let split = Split::new(pattern, SplitDelimiterBehavior::Isolated, false).unwrap();
        steps.push(PreTokenizerWrapper::Split(split));
    }
    if kind.byte_encode() {
        steps.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(
            false, false, false,
        )));
    }
    let mut pts = PreTokenizedString::from(text);
    Sequence::new(steps).pre_tokenize(&mut pts).unwrap();
    pts.get_splits(OffsetReferential::Original, OffsetType::None)
        .into_iter()
        .map(|(s, _, _)| s.to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(kind: PreKind, text: &str) -> Vec<String> {
        WordSplitter::new(kind, "test").unwrap().split(text)
    }

    #[test]
    fn starcoder_splits_digits_and_words() {
        assert_eq!(
            words(PreKind::Starcoder, "Hello world 123 it's"),
            ["Hello", "Ġworld", "Ġ", "1", "2", "3", "Ġit", "'s"]
        );
        assert_eq!(
            words(PreKind::Starcoder, "a  \n\nb"),
            ["a", "ĠĠĊ", "Ċ", "b"]
        );
    }

    #[test]
    fn llama3_groups_three_digits_and_newlines() {
        assert_eq!(
            words(PreKind::Llama3, "12345 x\n\n y"),
            ["123", "45", "Ġx", "ĊĊ", "Ġy"]
        );
    }

    #[test]
    fn unicode_16_characters_are_not_letters_or_digits() {
        // U+1C89 (a letter) and U+116D0 (a digit) are new in Unicode 16.0: llama.cpp's tables
        // leave them undefined, so they split off as "other" instead of joining the letters,
        // and the digit is not cut out by `\p{N}` (which would leave "\n\n" whole).
        assert_eq!(words(PreKind::Gpt2, "a\u{1C89}b").len(), 3);
        let w = words(PreKind::Starcoder, "\n\n\u{116D0}");
        assert_eq!(w.len(), 3);
        assert_eq!(w[..2], ["Ċ", "Ċ"]);
    }

    #[test]
    fn oniguruma_is_still_unicode_16() {
        // Characters of Unicode 17.0 (Sidetic, Beria Erfe, Tai Yo). If Oniguruma's tables move
        // past 16.0 these become letters and NEW_IN_16 needs the 17.0 additions too.
        let split = |c: char| words(PreKind::Gpt2, &format!("a{c}b")).len();
        for c in ['\u{10940}', '\u{16EA0}', '\u{1E6C0}'] {
            assert_eq!(split(c), 3, "U+{:X} is a letter now", c as u32);
        }
        assert_eq!(split('é'), 1);
    }

    #[test]
    fn wregex_classes_leave_out_unicode_spaces() {
        // llama.cpp hides U+3000 from the explicit ranges of DeepSeek's regexes.
        assert_eq!(words(PreKind::DeepseekLlm, "  \u{3000}"), ["ĠĠãĢĢ"]);
    }

    #[test]
    fn gemma4_splits_newline_runs_only_and_keeps_utf8() {
        assert_eq!(words(PreKind::Gemma4, "a▁b\n\nc é"), ["a▁b", "\n\n", "c é"]);
    }

    #[test]
    fn splitter_matches_tokenizers_pipeline() {
        // The SmolLM2 fuzz strings cover every script, white space and digit case we know.
        let mut texts: Vec<String> = include_str!("testdata/smollm2-fuzz.jsonl")
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["text"].as_str().unwrap().to_string()
            })
            .collect();
        texts.push("a  \n\n b\r\n\t 12345 x’s 'S  ".to_string());
        for (_, kind, _) in NAMES {
            let splitter = WordSplitter::new(*kind, "test").unwrap();
            for text in &texts {
                assert_eq!(
                    splitter.split(text),
                    split_with_tokenizers(*kind, text),
                    "{kind:?} {text:?}"
                );
            }
        }
    }

    #[test]
    fn every_family_compiles() {
        for (_, kind, _) in NAMES {
            WordSplitter::new(*kind, "test").unwrap();
        }
    }

    #[test]
    fn names_resolve_or_fail_clearly() {
        assert_eq!(
            Pre::resolve("gpt2", Some("smollm")).unwrap().kind,
            PreKind::Starcoder
        );
        assert!(
            Pre::resolve("gpt2", Some("llama-bpe"))
                .unwrap()
                .ignore_merges
        );
        assert_eq!(Pre::resolve("gpt2", None).unwrap().kind, PreKind::Default);
        let e = Pre::resolve("gpt2", Some("no-such-pre"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no-such-pre") && e.contains("tokenizer.ggml.pre"),
            "{e}"
        );
        let gemma4 = Pre::resolve("gpt2", Some("gemma4")).unwrap();
        assert_eq!(gemma4.kind, PreKind::Gemma4);
        assert!(!Pre::resolve("gpt2", Some("smollm")).unwrap().clean_spaces);
        assert!(Pre::resolve("gpt2", Some("gpt-2")).unwrap().clean_spaces);
        let e = Pre::resolve("gpt2", Some("kimi-k2"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("kimi-k2") && e.contains("not supported"), "{e}");
    }
}
