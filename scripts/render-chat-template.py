#!/usr/bin/env python3
"""The reference renderer for chat templates: Jinja2 set up as Hugging Face `transformers`
renders `tokenizer.chat_template` (a sandboxed environment with trimmed and left-stripped
blocks, loop controls, `raise_exception`, `strftime_now`, and a `tojson` that keeps non-ASCII
text and key order). The template tests (tests/it/chat_templates.rs) render the same
conversations with Ember and compare.

Input on stdin: {"date": "YYYY-MM-DD", "cases": [{"template": PATH, "context": {...}}, ...]}
Output on stdout: a JSON list, per case {"text": ...} or {"error": ...}.
"""
import datetime
import json
import sys

import jinja2
import jinja2.ext
import jinja2.sandbox


class TemplateError(Exception):
    pass


def main():
    req = json.load(sys.stdin)
    date = datetime.datetime.strptime(req["date"], "%Y-%m-%d")

    def raise_exception(msg):
        raise TemplateError(msg)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: date.strftime(fmt)
    out = []
    compiled = {}
    for case in req["cases"]:
        path = case["template"]
        try:
            if path not in compiled:
                with open(path, encoding="utf-8") as f:
                    compiled[path] = env.from_string(f.read())
            out.append({"text": compiled[path].render(**case["context"])})
        except Exception as e:  # the reference's failure, whatever it is
            out.append({"error": f"{type(e).__name__}: {e}"})
    json.dump(out, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
