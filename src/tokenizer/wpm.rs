//! WordPiece ("bert" vocabularies), as llama.cpp's `llm_tokenizer_wpm_session`: the text is
//! cut into words at white space, punctuation, ASCII symbols and CJK ideographs (each of the
//! latter a word of its own) after dropping control characters and, optionally, reducing each
//! character to the first code point of its canonical decomposition, dropping combining marks
//! and lower-casing; then each word, prefixed with `▁`, is covered greedily by the longest
//! vocabulary tokens, or becomes the unknown token when some position matches nothing.
//! Written here because `tokenizers`' BERT normalizer/pre-tokenizer differ in the details:
//! full NFD, only `Mn` marks stripped, full (not simple) lower-casing, other white space.

use tokenizers::utils::SysRegex;
use tokenizers::NormalizedString;

use super::error::TokenizerError;
use super::pretok::NEW_IN_16;
use super::spm::SPACE;
use super::vocab::Vocab;

const CONTROL: u8 = 1;
const MARK: u8 = 2;
const PUNCT: u8 = 4;
/// Unassigned in llama.cpp's Unicode tables: no category and no case mapping.
const UNDEFINED: u8 = 8;

pub(crate) struct WpmEngine {
    lowercase: bool,
    strip_accents: bool,
    max_token_len: usize,
    unk: Option<u32>,
    /// Character classes, each a regex over single characters.
    classes: Vec<(SysRegex, u8)>,
}

/// llama.cpp's white space set (`unicode_set_whitespace`).
fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t'..='\r'
            | ' '
            | '\u{85}'
            | '\u{A0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200A}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202F}'
            | '\u{205F}'
            | '\u{3000}'
    )
}

/// The CJK ideograph blocks BERT isolates (as llama.cpp and Hugging Face list them).
fn is_chinese(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F)
}

/// ASCII characters of Unicode category S.
fn is_ascii_symbol(c: char) -> bool {
    matches!(c, '$' | '+' | '<' | '=' | '>' | '^' | '`' | '|' | '~')
}

/// The first code point of the canonical decomposition (llama.cpp's one-to-one "NFD").
fn decompose_first(c: char) -> char {
    if c.is_ascii() {
        return c;
    }
    let mut n = NormalizedString::from(c.encode_utf8(&mut [0; 4]) as &str);
    n.nfd();
    n.get().chars().next().unwrap_or(c)
}

impl WpmEngine {
    pub(crate) fn new(
        vocab: &Vocab,
        lowercase: bool,
        strip_accents: bool,
    ) -> Result<WpmEngine, TokenizerError> {
        let new = |cat: &str| {
            NEW_IN_16
                .iter()
                .find(|(c, _)| *c == cat)
                .map_or("", |(_, r)| *r)
        };
        let sources = [
            (r"[\p{Cc}\p{Cf}\p{Co}]".to_string(), CONTROL),
            (format!(r"[\p{{M}}&&[^{}]]", new("M")), MARK),
            (format!(r"[\p{{P}}&&[^{}]]", new("P")), PUNCT),
            (
                format!(
                    r"[\p{{Cn}}{}{}{}{}]",
                    new("L"),
                    new("N"),
                    new("P"),
                    new("M")
                ),
                UNDEFINED,
            ),
        ];
        let mut classes = Vec::with_capacity(sources.len());
        for (re, bit) in sources {
            let compiled = SysRegex::new(&re).map_err(|e| TokenizerError::Regex {
                pre: "bert".to_string(),
                regex: re.clone(),
                msg: e.to_string(),
            })?;
            classes.push((compiled, bit));
        }
        Ok(WpmEngine {
            lowercase,
            strip_accents,
            max_token_len: vocab.tokens.iter().map(|t| t.text.len()).max().unwrap_or(0),
            unk: vocab.id(super::meta::Slot::Unk),
            classes,
        })
    }

    /// llama.cpp's `preprocess`: the words of `text`.
    fn words(&self, text: &str) -> Vec<String> {
        let chars: String = if self.strip_accents {
            text.chars().map(decompose_first).collect()
        } else {
            text.to_string()
        };
        // Class bits per byte offset of a character start.
        let mut flags = vec![0u8; chars.len()];
        for (re, bit) in &self.classes {
            for (start, _) in re.find_iter(&chars) {
                flags[start] |= bit;
            }
        }
        let mut words = vec![String::new()];
        for (at, c) in chars.char_indices() {
            let f = flags[at];
            if is_space(c) {
                if !words.last().is_some_and(String::is_empty) {
                    words.push(String::new());
                }
                continue;
            }
            if c == '\0' || c == '\u{FFFD}' || f & CONTROL != 0 {
                continue;
            }
            if self.strip_accents && f & MARK != 0 {
                continue;
            }
            let isolated = f & PUNCT != 0 || is_ascii_symbol(c) || is_chinese(c);
            let c = if self.lowercase && f & UNDEFINED == 0 {
                // Simple case mapping: the first character of the full one (İ → i).
                c.to_lowercase().next().unwrap_or(c)
            } else {
                c
            };
            if isolated {
                if !words.last().is_some_and(String::is_empty) {
                    words.push(String::new());
                }
                words.last_mut().expect("words is never empty").push(c);
                words.push(String::new());
            } else {
                words.last_mut().expect("words is never empty").push(c);
            }
        }
        if words.last().is_some_and(String::is_empty) {
            words.pop();
        }
        words
    }

    /// Appends the tokens of `text` (a fragment without special tokens) to `out`.
    pub(crate) fn tokenize(&self, vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
        for word in self.words(text) {
            if word.is_empty() {
                continue;
            }
            let word = format!("{SPACE}{word}");
            let n = word.len();
            let first = out.len();
            let mut i = 0;
            while i < n {
                let longest = (i + 1..=n.min(i + self.max_token_len))
                    .rev()
                    .find_map(|j| Some((j, vocab.text_to_id(word.get(i..j)?)?)));
                match longest {
                    Some((j, id)) => {
                        out.push(id);
                        i = j;
                    }
                    None => {
                        // Some position matches no token: the whole word is unknown.
                        out.truncate(first);
                        break;
                    }
                }
            }
            if out.len() == first {
                out.extend(self.unk);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decomposition_keeps_the_base_character() {
        assert_eq!(decompose_first('é'), 'e');
        assert_eq!(decompose_first('Å'), 'A');
        assert_eq!(decompose_first('가'), '\u{1100}');
        assert_eq!(decompose_first('x'), 'x');
    }

    #[test]
    fn words_split_like_bert() {
        let raw = super::super::meta::RawVocab {
            model: "bert".into(),
            tokens: vec!["[UNK]".into()],
            ..Default::default()
        };
        let vocab = Vocab::build(
            &raw,
            raw.tokens.clone(),
            super::super::vocab::VocabKind::Wpm,
            super::super::vocab::TypeDefaults {
                add_bos: false,
                clean_spaces: true,
                force_add_bos: false,
            },
        )
        .unwrap();
        let e = WpmEngine::new(&vocab, true, true).unwrap();
        assert_eq!(
            e.words("Héllo, WORLD!\u{0}a$b 我们\u{301}x"),
            ["hello", ",", "world", "!", "a", "$", "b", "我", "们", "x"]
        );
    }

    #[test]
    fn greedy_longest_match_with_cls_and_sep() {
        let texts = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "▁hello", "▁hel", "lo", "▁world", "▁,", "▁!", "▁x",
            "y",
        ];
        let raw = super::super::meta::RawVocab {
            model: "bert".into(),
            tokens: texts.iter().map(|t| t.to_string()).collect(),
            token_types: Some(vec![3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1]),
            special_ids: vec![
                ("tokenizer.ggml.bos_token_id", 2),
                ("tokenizer.ggml.unknown_token_id", 1),
                ("tokenizer.ggml.seperator_token_id", 3),
                ("tokenizer.ggml.padding_token_id", 0),
            ],
            ..Default::default()
        };
        let t = super::super::Tokenizer::from_raw(raw).unwrap();
        let ids = t.encode("Hello, WORLD! xy hellz", true, false);
        let got: Vec<&str> = ids.iter().map(|&i| t.token_text(i)).collect();
        assert_eq!(
            got,
            ["[CLS]", "▁hello", "▁,", "▁world", "▁!", "▁x", "y", "[UNK]", "[SEP]"]
        );
        assert_eq!(t.encode("hello", false, false), [4]);
        // Pieces: ▁ → space; detokenize cleans " ," and " !" (clean_spaces).
        assert_eq!(t.detokenize(&ids[1..5], false, false), b" hello, world!");
    }
}
