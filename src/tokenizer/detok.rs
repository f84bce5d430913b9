//! llama.cpp's `clean_spaces` step of `llama_detokenize` (Hugging Face's
//! `clean_up_tokenization_spaces`), on bytes: three passes, each reading its input as the
//! previous pass left it. Written here because `tokenizers` applies it to strings inside its
//! decoders, which we do not use.

/// Removes the space before `?`, `!`, `.` and `,`; the spaces around a lone `'` (" ' ");
/// and the space before `'s`, `'m`, `'re` and `'ve`.
pub(crate) fn clean_spaces(text: &[u8]) -> Vec<u8> {
    let text = drop_space_before_punctuation(text);
    let text = join_lone_apostrophes(&text);
    drop_space_before_contractions(&text)
}

fn drop_space_before_punctuation(t: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(t.len());
    for (i, &x) in t.iter().enumerate() {
        if i > 0 && t[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            out.pop();
        }
        out.push(x);
    }
    out
}

fn join_lone_apostrophes(t: &[u8]) -> Vec<u8> {
    // A space consumed after an apostrophe no longer counts as the space before the next
    // character (llama.cpp overwrites it with NUL).
    let mut t = t.to_vec();
    let mut out = Vec::with_capacity(t.len());
    let mut i = 0;
    while i < t.len() {
        let x = t[i];
        if i > 0 && x == b'\'' && i + 1 < t.len() && t[i - 1] == b' ' && t[i + 1] == b' ' {
            out.pop();
            i += 1;
            t[i] = 0;
        }
        out.push(x);
        i += 1;
    }
    out
}

fn drop_space_before_contractions(t: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(t.len());
    for (i, &x) in t.iter().enumerate() {
        if i > 0 && t[i - 1] == b' ' && x == b'\'' && i + 1 < t.len() {
            let next = (t[i + 1], t.get(i + 2).copied());
            let drop = match next {
                (b't' | b'd', _) => false,
                (b's' | b'm', _) => true,
                (b'r' | b'v', Some(b'e')) => true,
                _ => false,
            };
            if drop {
                out.pop();
            }
        }
        out.push(x);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::clean_spaces;

    fn clean(s: &str) -> String {
        String::from_utf8(clean_spaces(s.as_bytes())).unwrap()
    }

    #[test]
    fn spaces_before_punctuation_go() {
        assert_eq!(clean("Hello , world !"), "Hello, world!");
        assert_eq!(clean("a  ."), "a .");
        assert_eq!(clean(" ."), ".");
        assert_eq!(clean(""), "");
    }

    #[test]
    fn lone_apostrophes_join() {
        assert_eq!(clean("a ' b"), "a'b");
        assert_eq!(clean("a ' ' b"), "a'' b");
    }

    #[test]
    fn contractions() {
        assert_eq!(clean("it 's I 'm we 're you 've"), "it's I'm we're you've");
        assert_eq!(clean("don 't I 'd we 'll"), "don 't I 'd we 'll");
        assert_eq!(clean(" 'r"), " 'r");
    }
}
