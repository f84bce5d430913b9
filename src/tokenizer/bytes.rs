//! The GPT-2 byte ↔ character table of byte-level BPE, and token pieces (token → bytes)
//! for every vocabulary type.
//! Written here because `tokenizers`' ByteLevel decoder works on whole sequences, returns
//! lossy `String`s and passes unknown characters through, where llama.cpp gives per-token
//! bytes with an `[UNK_BYTE_..]` marker.

use std::sync::LazyLock;

use super::vocab::{Attr, TokenData};

/// Byte b is shown as itself when printable (`!`..=`~`, `¡`..=`¬`, `®`..=`ÿ`), else as
/// U+0100 + (its rank among the non-printable bytes).
fn byte_to_char_table() -> [char; 256] {
    let printable = |b: u32| {
        (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b)
    };
    let mut table = ['\0'; 256];
    let mut next = 0x100u32;
    for b in 0..256u32 {
        let c = if printable(b) {
            b
        } else {
            next += 1;
            next - 1
        };
        table[b as usize] = char::from_u32(c).expect("GPT-2 byte table stays below U+0144");
    }
    table
}

static BYTE_TO_CHAR: LazyLock<[char; 256]> = LazyLock::new(byte_to_char_table);

/// The byte a GPT-2 table character stands for.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let table = &*BYTE_TO_CHAR;
    let cp = c as u32;
    // Printable bytes map to themselves; the rest live in U+0100..U+0144.
    if cp < 0x100 {
        (table[cp as usize] == c).then_some(cp as u8)
    } else {
        table.iter().position(|&t| t == c).map(|b| b as u8)
    }
}

/// The GPT-2 table character of byte `b`.
pub(crate) fn byte_to_char(b: u8) -> char {
    BYTE_TO_CHAR[b as usize]
}

/// llama.cpp's `llama_decode_text`: table characters back to bytes; a character outside the
/// table becomes the marker text `[UNK_BYTE_0x<hex of the char's UTF-8><token text>]`.
fn decode_byte_level(text: &str, out: &mut Vec<u8>) {
    for c in text.chars() {
        match char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
}

/// `<0xAB>` → 0xAB (llama.cpp's `token_to_byte`).
fn byte_token_value(text: &str) -> Option<u8> {
    u8::from_str_radix(text.get(3..5)?, 16).ok()
}

/// Appends the piece of a byte-level BPE token with `special = true` (llama.cpp's
/// `token_to_piece`, BPE branch): control/unknown/user-defined tokens give their text
/// verbatim, normal tokens their bytes, byte tokens their byte, anything else (undefined,
/// unused) nothing.
pub(crate) fn bpe_piece(token: &TokenData, out: &mut Vec<u8>) {
    let attr = token.attr;
    if attr.any(Attr::UNKNOWN | Attr::CONTROL | Attr::USER_DEFINED) {
        out.extend_from_slice(token.text.as_bytes());
    } else if attr.any(Attr::NORMAL) {
        decode_byte_level(&token.text, out);
    } else if attr.any(Attr::BYTE) {
        out.extend(byte_token_value(&token.text));
    }
}

/// Appends the piece of a token whose text spells spaces as `▁` (SPM, WordPiece, Gemma 4's
/// BPE) with `special = true`: like [`bpe_piece`], but normal tokens give their text with
/// `▁` → space.
pub(crate) fn metaspace_piece(token: &TokenData, out: &mut Vec<u8>) {
    let attr = token.attr;
    if attr.any(Attr::UNKNOWN | Attr::CONTROL | Attr::USER_DEFINED) {
        out.extend_from_slice(token.text.as_bytes());
    } else if attr.any(Attr::NORMAL) {
        let mut parts = token.text.split('\u{2581}');
        out.extend_from_slice(parts.next().unwrap_or_default().as_bytes());
        for part in parts {
            out.push(b' ');
            out.extend_from_slice(part.as_bytes());
        }
    } else if attr.any(Attr::BYTE) {
        out.extend(byte_token_value(&token.text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_a_bijection_with_known_points() {
        assert_eq!(byte_to_char(b'A'), 'A');
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(0xad), 'Ń');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(byte_to_char(b)), Some(b));
        }
        assert_eq!(char_to_byte(' '), None);
        assert_eq!(char_to_byte('€'), None);
    }

    fn piece(f: fn(&TokenData, &mut Vec<u8>), t: &TokenData) -> Vec<u8> {
        let mut out = Vec::new();
        f(t, &mut out);
        out
    }

    fn bpe_piece(t: &TokenData) -> Vec<u8> {
        piece(super::bpe_piece, t)
    }

    fn metaspace_piece(t: &TokenData) -> Vec<u8> {
        piece(super::metaspace_piece, t)
    }

    #[test]
    fn pieces_by_attribute() {
        let tok = |text: &str, attr| TokenData {
            text: text.to_string(),
            score: 0.0,
            attr,
        };
        assert_eq!(bpe_piece(&tok("ĠHello", Attr::NORMAL)), b" Hello");
        assert_eq!(bpe_piece(&tok("<|im_end|>", Attr::CONTROL)), b"<|im_end|>");
        assert_eq!(bpe_piece(&tok("õ", Attr::USER_DEFINED)), "õ".as_bytes());
        assert_eq!(bpe_piece(&tok("<0x0A>", Attr::BYTE)), b"\n");
        assert_eq!(bpe_piece(&tok("x", Attr::UNUSED)), b"");
        assert_eq!(
            bpe_piece(&tok("a€", Attr::NORMAL)),
            b"a[UNK_BYTE_0xe282aca\xe2\x82\xac]"
        );
    }

    #[test]
    fn metaspace_pieces_by_attribute() {
        let tok = |text: &str, attr| TokenData {
            text: text.to_string(),
            score: 0.0,
            attr,
        };
        assert_eq!(metaspace_piece(&tok("▁Hello▁▁", Attr::NORMAL)), b" Hello  ");
        assert_eq!(metaspace_piece(&tok("<0xE2>", Attr::BYTE)), b"\xe2");
        assert_eq!(metaspace_piece(&tok("<s>", Attr::CONTROL)), b"<s>");
        assert_eq!(
            metaspace_piece(&tok("▁<x>", Attr::USER_DEFINED)),
            "▁<x>".as_bytes()
        );
        assert_eq!(metaspace_piece(&tok("<unused1>", Attr::UNUSED)), b"");
    }
}
