#!/usr/bin/env python3
"""Record llama.cpp's token ids for varied strings, as a JSON-lines fixture for Ember's tests.

    gen-llama-fixture.py MODEL.gguf OUT.jsonl [--llama-tokenize BIN] [--seed N] [--count N]

Each line: {"text", "add_special", "parse_special", "ids"} and, on every fifth line,
"listing_hex": the hex of llama-tokenize's `id -> 'piece'` listing of the same call (pieces
rendered by common_token_to_piece with special = true).

Ids come from llama.cpp's own `llama-tokenize` (tools/tokenize), run once per string:
`--stdin --no-escape --ids --log-disable`, plus `--no-bos` for add_special = false (the tool
passes add_special = model's add_bos && !--no-bos) and `--no-parse-special` for
parse_special = false. Strings are a fixed list of edge cases followed by seeded random
mixes of ASCII words, code, white-space runs, digits, many scripts, combining marks, emoji
(ZWJ sequences, flags, skin tones), CJK, rare and unassigned code points, control
characters, and the vocabulary's own special/user-defined token texts (read from the GGUF).
Python 3 standard library only.
"""

import argparse
import json
import os
import random
import struct
import subprocess
import sys

DEFAULT_BIN = os.path.expanduser("~/.cache/llama-cpp-peer/src/build/bin/llama-tokenize")


def gguf_tokens(path):
    """(tokens, token_types) from a GGUF file's metadata."""
    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
    with open(path, "rb") as f:

        def rd(fmt):
            return struct.unpack("<" + fmt, f.read(struct.calcsize(fmt)))[0]

        def rstr():
            return f.read(rd("Q")).decode("utf-8", "replace")

        def value(t):
            if t in scalar:
                return rd(scalar[t])
            if t == 8:
                return rstr()
            if t == 9:
                at, n = rd("I"), rd("Q")
                return [value(at) for _ in range(n)]
            raise ValueError(f"GGUF value type {t}")

        assert f.read(4) == b"GGUF", path
        rd("I")
        rd("Q")
        meta = {}
        for _ in range(rd("Q")):
            key = rstr()
            meta[key] = value(rd("I"))
            if "tokenizer.ggml.tokens" in meta and "tokenizer.ggml.token_type" in meta:
                break
    return meta["tokenizer.ggml.tokens"], meta.get("tokenizer.ggml.token_type", [])


FIXED = [
    "",
    " ",
    "  ",
    "   ",
    "\t",
    "\n",
    "\n\n",
    "\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n",
    " " * 40,
    "\t\t\n \n",
    "\r\n",
    "Hello world",
    " Hello world",
    "Hello World!",
    "Hello, y'all! How are you 😁 ?",
    "I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea?",
    "3 33 333 3333 33333 3.3 3..3 3...3 1,000,000 0x1F -42 +7e-10",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "fn main() { println!(\"{}\", 1 << 3); } // comment",
    "<div class=\"x\"><table><tr><td>1</td></tr></table></div>",
    "SELECT * FROM t WHERE a >= 10 AND b <> 'x';",
    "🚀 (normal) 😶‍🌫️ (multiple emojis concatenated) ✅ 🦙🦙",
    "👩‍👩‍👧‍👦 🇫🇷🇯🇵 👍🏽 ❤️‍🔥 🏳️‍🌈",
    "我想在apple工作1314151天～ 日本語のテキスト 한국어 텍스트",
    "нещо на Български — Ελληνικά — עברית — العربية — हिन्दी — ไทย — ქართული",
    "កាន់តែពិសេសអាច😁 ?",
    "e\u0301 n\u0303 a\u030a\u0323 Ä Å Ǆ ǅ ǆ ﬁ ẞ ß İ ı",
    "\u200b\u200c\u200d\ufeff\u00ad zero-width",
    "\x00\x01\x07\x1b[31mred\x1b[0m\x7f",
    "\u00a0\u2002\u2003\u3000\u2028\u2029\u0085 unicode spaces",
    "▁ ▁▁ already-escaped ▁x",
    "<0x41> <0xE2> text that looks like byte tokens",
    "\U0010fffd \U000e0001 \U0001fbf9 \ufffd \U00013460 rare and private use",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕸𝖆𝖙𝖍 ∀x∈ℝ: x² ≥ 0 ∑ ∫ √",
    "'''''' ``````` \"\"\"\" ...... !!!!!! ?????? ------=======",
    "a" * 300,
    "The quick brown fox jumps over the lazy dog. " * 5,
]

WORDS = ["the", "of", "and", "Hello", "world", "tokenizer", "llama", "Gemma", "naïve", "café",
         "résumé", "Straße", "don't", "it's", "we're", "I'll", "x", "a", "supercalifragilistic",
         "2024", "3.14", "foo_bar", "camelCase", "snake_case", "URL", "https://example.com/a?b=c"]
SCRIPTS = ["привет", "мир", "γειά", "σου", "שלום", "مرحبا", "नमस्ते", "สวัสดี", "こんにちは",
           "世界", "你好", "안녕하세요", "Ողջույն", "გამარჯობა", "ሰላም", "வணக்கம்", "ສະບາຍດີ",
           "မင်္ဂလာပါ", "ᏏᏲ", "ꦱꦸꦒꦼꦁ", "𐌰𐌱𐌲", "𓀀𓀁", "ᚠᚢᚦ"]
EMOJI = ["😀", "😶‍🌫️", "👍🏿", "🇩🇪", "🦙", "✅", "❤️", "🫠", "🧑‍💻", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "⌚", "☕"]
SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\u00a0", "\u3000", "\u2009",
          "\n\n\n", "    ", " " * 9, "\t\t", "\v", "\f"]
PUNCT = [".", ",", "!", "?", "...", "—", "–", "“", "”", "«", "»", "'", "\"", "(", ")", "[", "]",
         "{", "}", "<", ">", "/", "\\", "|", "#", "@", "$", "%", "^", "&", "*", "~", "`", "=", "+"]
MARKS = ["\u0301", "\u0308", "\u0323", "\u064b", "\u093c", "\u0e31", "\u20dd", "\ufe0f"]


def random_text(rng, specials):
    parts = []
    for _ in range(rng.randint(1, 14)):
        r = rng.random()
        if r < 0.25:
            parts.append(rng.choice(WORDS))
        elif r < 0.40:
            parts.append(rng.choice(SCRIPTS))
        elif r < 0.50:
            parts.append(rng.choice(EMOJI))
        elif r < 0.65:
            parts.append(rng.choice(SPACES))
        elif r < 0.73:
            parts.append(rng.choice(PUNCT))
        elif r < 0.78:
            parts.append(str(rng.randint(0, 10 ** rng.randint(1, 12))))
        elif r < 0.81:
            parts.append(rng.choice(MARKS))
        elif r < 0.86:
            # Any code point but surrogates: assigned, unassigned, private use, controls.
            cp = rng.choice([rng.randint(0, 0x7F), rng.randint(0x80, 0xFFFF), rng.randint(0x10000, 0x10FFFF)])
            if 0xD800 <= cp <= 0xDFFF:
                cp = 0xFFFD
            parts.append(chr(cp))
        elif specials:
            parts.append(rng.choice(specials))
    return "".join(parts)


def llama_ids(bin_path, model, text, add_special, parse_special, listing=False):
    args = [bin_path, "-m", model, "--stdin", "--no-escape", "--log-disable"]
    if not listing:
        args.append("--ids")
    if not add_special:
        args.append("--no-bos")
    if not parse_special:
        args.append("--no-parse-special")
    out = subprocess.run(args, input=text.encode("utf-8"), capture_output=True, check=True).stdout
    return out if listing else json.loads(out.decode("ascii"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--llama-tokenize", default=DEFAULT_BIN)
    ap.add_argument("--seed", type=int, default=20250501)
    ap.add_argument("--count", type=int, default=240, help="random strings after the fixed ones")
    a = ap.parse_args()

    tokens, types = gguf_tokens(a.model)
    # Control (3) and user-defined (4) token texts; a sample of the many <unusedN>.
    specials = [t for t, ty in zip(tokens, types) if ty in (3, 4) and "unused" not in t]
    specials += [t for t, ty in zip(tokens, types) if ty in (3, 4) and "unused" in t][:5]
    rng = random.Random(a.seed)
    chat = [
        "<start_of_turn>user\nHi there!<end_of_turn>\n<start_of_turn>model\n",
        "<bos><start_of_turn>user\n  spaced <end_of_turn>",
        "<eos><pad><unk><mask>[multimodal]<start_of_image><end_of_image>",
        "text<start_of_turn>text <end_of_turn> text",
        "<start_of_turn", "start_of_turn>", "<<start_of_turn>>",
    ]
    texts = FIXED + chat + [" ".join(rng.sample(specials, min(4, len(specials))))]
    texts += [random_text(rng, specials) for _ in range(a.count)]

    combos = [(True, True), (False, False), (True, False), (False, True)]
    with open(a.out, "w", encoding="utf-8") as out:
        for i, text in enumerate(texts):
            add_special, parse_special = combos[i % 4]
            rec = {
                "text": text,
                "add_special": add_special,
                "parse_special": parse_special,
                "ids": llama_ids(a.llama_tokenize, a.model, text, add_special, parse_special),
            }
            if i % 5 == 0:
                listing = llama_ids(a.llama_tokenize, a.model, text, add_special, parse_special, True)
                rec["listing_hex"] = listing.hex()
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
            print(f"\r{i + 1}/{len(texts)}", end="", file=sys.stderr)
    print(file=sys.stderr)


if __name__ == "__main__":
    main()
