"""Throughput and time to first token of an OpenAI-compatible server: C concurrent clients, each
streaming R completions of N tokens (`ignore_eos`, so every answer has N tokens), one after the
other. Prints aggregate generated tokens/s and TTFT p50/p95 as one JSON line.

Usage: python3 scripts/serve/bench.py BASE_URL [C] [N] [R]
"""

import concurrent.futures
import json
import statistics
import sys
import time

try:
    import httpx
except ImportError:
    import httpx2 as httpx

base = sys.argv[1]
conc = int(sys.argv[2]) if len(sys.argv) > 2 else 8
n = int(sys.argv[3]) if len(sys.argv) > 3 else 128
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 1
client = httpx.Client(timeout=600)


def one(i):
    out = []
    for r in range(rounds):
        body = {"prompt": f"Request {i}.{r}: write a story about a river and a mill.",
                "max_tokens": n, "temperature": 0.8, "seed": 1000 * r + i, "ignore_eos": True,
                "stream": True, "stream_options": {"include_usage": True}}
        t0 = time.time()
        ttft, tokens = None, 0
        with client.stream("POST", f"{base}/v1/completions", json=body) as resp:
            for line in resp.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                d = json.loads(line[6:])
                if ttft is None and d.get("choices") and d["choices"][0].get("text"):
                    ttft = time.time() - t0
                if d.get("usage"):
                    tokens = d["usage"]["completion_tokens"]
        out.append((ttft or 0.0, tokens))
    return out


t0 = time.time()
with concurrent.futures.ThreadPoolExecutor(conc) as pool:
    res = [x for r in pool.map(one, range(conc)) for x in r]
wall = time.time() - t0
ttfts = sorted(t for t, _ in res)
tokens = sum(k for _, k in res)
print(json.dumps({
    "tokens": tokens, "wall_s": round(wall, 2), "tps": round(tokens / wall, 1),
    "ttft_p50_ms": round(1e3 * statistics.median(ttfts), 1),
    "ttft_p95_ms": round(1e3 * ttfts[min(len(ttfts) - 1, int(0.95 * len(ttfts)))], 1),
}))
