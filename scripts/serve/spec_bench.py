#!/usr/bin/env python3
"""One client, greedy, sequential chat requests (code to edit: text speculation can copy):
median generated tokens per second of wall time per request (prompt included), and the
texts (to compare servers). Usage: spec_bench.py URL MAX_TOKENS ROUNDS"""
import json
import statistics
import sys
import time
import urllib.request

url, max_tokens, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
CODE = '''def parse_config(path):
    result = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, value = line.split("=", 1)
            result[key.strip()] = value.strip()
    return result


def merge_configs(base, override):
    merged = dict(base)
    for key, value in override.items():
        merged[key] = value
    return merged
'''
TASKS = [
    "Add type hints to every function in this code and return the whole code:\n\n" + CODE,
    "Rename the variable `result` to `settings` in this code and return the whole code:\n\n" + CODE,
    "Add a docstring to each function in this code and return the whole code:\n\n" + CODE,
]


def ask(content):
    body = json.dumps({
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens, "temperature": 0,
    }).encode()
    req = urllib.request.Request(url + "/v1/chat/completions", body, {"content-type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req) as r:
        d = json.load(r)
    secs = time.perf_counter() - t0
    return d["choices"][0]["message"]["content"], d["usage"]["completion_tokens"], secs


rates, texts = [], []
for _ in range(rounds):
    for t in TASKS:
        text, n, secs = ask(t)
        rates.append(n / secs)
        texts.append(text)
print(json.dumps({"tps": statistics.median(rates), "n": len(rates), "texts": texts}))
