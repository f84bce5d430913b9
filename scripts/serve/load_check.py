"""Load on `ember serve`: N requests at concurrency C, a mix of streaming and non-streaming
chat and completions; 5% of the clients leave mid-stream and 5% send malformed bodies. Every
well-formed request must be answered (200), malformed ones get a 4xx, no 5xx except the
documented 503 (queue full), the server's RSS must stay flat after warm-up, and it must still
serve at the end.

Usage: python3 scripts/serve/load_check.py EMBER MODEL [N] [C] [PORT]
"""

import concurrent.futures
import json
import random
import subprocess
import sys
import time

try:
    import httpx
except ImportError:  # newer openai clients bring httpx2, the same API
    import httpx2 as httpx

ember, model = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 200
conc = int(sys.argv[4]) if len(sys.argv) > 4 else 16
port = int(sys.argv[5]) if len(sys.argv) > 5 else 8090
base = f"http://127.0.0.1:{port}"


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


server = subprocess.Popen([ember, "serve", "-m", model, "--port", str(port)],
                          stderr=subprocess.DEVNULL)
client = httpx.Client(timeout=120)
for _ in range(300):
    try:
        if client.get(f"{base}/health").status_code == 200:
            break
    except Exception:
        time.sleep(0.1)

MALFORMED = [b"{not json", b'{"messages": 5}', b'{"prompt": "x", "max_tokens": -3}',
             b'{"messages": [{"role": "user"}], "temperature": "hot"}', b"[]"]


def one(i):
    rnd = random.Random(i)
    kind = rnd.random()
    chat = rnd.random() < 0.5
    path = "/v1/chat/completions" if chat else "/v1/completions"
    body = ({"messages": [{"role": "user", "content": f"Tell me about item {i}."}]} if chat
            else {"prompt": f"Item {i} is"})
    body.update({"max_tokens": rnd.randint(8, 64), "temperature": 0.7, "seed": i})
    if kind < 0.05:
        r = client.post(f"{base}{path}", content=rnd.choice(MALFORMED))
        return ("malformed", r.status_code)
    stream = rnd.random() < 0.5 or kind < 0.10
    body["stream"] = stream
    if not stream:
        r = client.post(f"{base}{path}", json=body)
        ok = r.status_code == 200 and r.json()["choices"]
        return ("plain", r.status_code if ok or r.status_code != 200 else -1)
    with client.stream("POST", f"{base}{path}", json=body) as r:
        if r.status_code != 200:
            return ("stream", r.status_code)
        done = False
        for k, line in enumerate(r.iter_lines()):
            if kind < 0.10 and k >= 2:
                return ("left", 200)  # leave mid-stream: the connection closes
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: "):
                json.loads(line[6:])
        return ("stream", 200 if done else -2)


warm = rss_kb(server.pid)
t0 = time.time()
results = []
with concurrent.futures.ThreadPoolExecutor(conc) as pool:
    for k, res in enumerate(pool.map(one, range(n))):
        results.append(res)
        if k == n // 4:
            warm = rss_kb(server.pid)
end_rss = rss_kb(server.pid)
elapsed = time.time() - t0
after = client.post(f"{base}/v1/completions", json={"prompt": "still there?", "max_tokens": 4})
server.terminate()
rc = server.wait(timeout=20)

bad = [(i, r) for i, r in enumerate(results)
       if (r[0] == "malformed" and not 400 <= r[1] < 500)
       or (r[0] != "malformed" and r[1] not in (200, 503))]
counts = {}
for k, s in results:
    counts[(k, s)] = counts.get((k, s), 0) + 1
print(f"{n} requests at concurrency {conc} in {elapsed:.1f} s: {sorted(counts.items())}")
print(f"RSS after a quarter: {warm / 1024:.1f} MiB, at the end: {end_rss / 1024:.1f} MiB")
print(f"serving after the load: {after.status_code}; exit code after SIGTERM: {rc}")
fail = bad or after.status_code != 200 or rc != 0 or end_rss > warm * 1.10
print("FAILED: " + str(bad[:5]) if fail else "load check passed")
sys.exit(1 if fail else 0)
