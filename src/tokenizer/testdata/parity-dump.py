#!/usr/bin/env python3
"""Dump llama.cpp's tokenization of many strings on many vocabularies, for Ember's
`parity_from_env` test (EMBER_TOKENIZER_PARITY=OUT.jsonl).

    parity-dump.py TOKENIZE_MANY OUT.jsonl MODEL.gguf... [--text FILE]... [--pieces]

TOKENIZE_MANY is tokenize-many.c built against libllama. Strings: the `text` of every line
of this directory's *.jsonl fixtures, plus each --text FILE whole and cut at blank lines;
each in all four (add_special, parse_special) combinations. Every record also carries
llama_detokenize of its ids for the four (remove_special, unparse_special) combinations;
with --pieces, each model also gets one record with every token's piece.
Python 3 standard library only.
"""

import argparse
import glob
import json
import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tool")
    ap.add_argument("out")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--text", action="append", default=[])
    ap.add_argument("--pieces", action="store_true")
    a = ap.parse_args()

    texts = []
    for f in sorted(glob.glob(os.path.join(HERE, "*.jsonl"))):
        for line in open(f, encoding="utf-8"):
            rec = json.loads(line)
            if "text" in rec:
                texts.append(rec["text"])
    for f in a.text:
        whole = open(f, encoding="utf-8").read()
        texts += [whole] + [p for p in whole.split("\n\n") if p]

    combos = [(1, 1), (0, 0), (1, 0), (0, 1)]
    with open(a.out, "w", encoding="utf-8") as out:
        for model in a.models:
            model = os.path.abspath(model)
            if a.pieces:
                res = subprocess.run([a.tool, model, "--pieces"], capture_output=True, check=True)
                pieces = [line.split(" ") for line in res.stdout.decode("ascii").splitlines()]
                out.write(json.dumps({"model": model, "pieces": pieces}) + "\n")
            inp = bytearray()
            recs = []
            for text in texts:
                data = text.encode("utf-8")
                for add, parse in combos:
                    inp += f"{add} {parse} {len(data)}\n".encode() + data + b"\n"
                    recs.append((text, add, parse))
            res = subprocess.run([a.tool, model, "--detok"], input=bytes(inp), capture_output=True, check=True)
            lines = res.stdout.decode("ascii").splitlines()
            assert len(lines) == 2 * len(recs), (model, len(lines), len(recs))
            for i, (text, add, parse) in enumerate(recs):
                ids = [int(x) for x in lines[2 * i].split()]
                rec = {
                    "model": model,
                    "text": text,
                    "add_special": bool(add),
                    "parse_special": bool(parse),
                    "ids": ids,
                    "detokenize": lines[2 * i + 1].split(" "),
                }
                out.write(json.dumps(rec, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
