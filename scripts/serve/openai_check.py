"""`ember serve` against the official `openai` Python client: chat completion, streaming,
completions, the models list, 8 concurrent streams; every answer well-formed, and at
temperature 0 equal to what `ember -p` gives alone (batch invariance through the server).

Usage: python3 scripts/serve/openai_check.py EMBER MODEL [PORT]
"""

import concurrent.futures
import json
import subprocess
import sys
import time
import urllib.request

import openai

ember, model = sys.argv[1], sys.argv[2]
port = int(sys.argv[3]) if len(sys.argv) > 3 else 8089
base = f"http://127.0.0.1:{port}"


def alone(prompt, n, chat):
    args = [ember, "-m", model, "-p", prompt, "--no-escape", "-n", str(n), "--temp", "0", "--json"]
    if chat:
        args.append("--chat")
    out = subprocess.run(args, capture_output=True, check=True)
    return json.loads(out.stdout)["text"]


server = subprocess.Popen(
    [ember, "serve", "-m", model, "--port", str(port), "-np", "8", "--api-key", "k"],
    stderr=subprocess.PIPE, text=True,
)
try:
    for _ in range(300):
        try:
            if urllib.request.urlopen(f"{base}/health").status == 200:
                break
        except Exception:
            time.sleep(0.1)
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="k")
    failures = []

    def check(name, cond, detail=""):
        print(f"{'ok  ' if cond else 'FAIL'} {name}{': ' + detail if detail and not cond else ''}")
        if not cond:
            failures.append(name)

    models = client.models.list()
    check("models.list", len(models.data) == 1 and models.data[0].object == "model")

    q = "What is the capital of France?"
    r = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": q}], max_tokens=32, temperature=0)
    text = r.choices[0].message.content
    check("chat completion", r.object == "chat.completion" and r.usage.completion_tokens > 0)
    want = alone(q, 32, True)
    check("chat text = ember --chat -p", text == want, f"{text!r} vs {want!r}")

    parts, usage = [], None
    for chunk in client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": q}], max_tokens=32, temperature=0,
            stream=True, stream_options={"include_usage": True}):
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.content:
                parts.append(c.delta.content)
    check("chat stream = non-streamed", "".join(parts) == text, f"{''.join(parts)!r}")
    check("stream usage", usage is not None and usage.completion_tokens == r.usage.completion_tokens)

    p = "The three primary colors are"
    c = client.completions.create(model="m", prompt=p, max_tokens=24, temperature=0)
    check("completion", c.object == "text_completion")
    want = alone(p, 24, False)
    check("completion text = ember -p", c.choices[0].text == want, f"{c.choices[0].text!r} vs {want!r}")

    prompts = [f"Write one sentence about the number {i}." for i in range(8)]

    def stream_one(prompt):
        out = []
        for chunk in client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": prompt}], max_tokens=48,
                temperature=0, stream=True):
            for ch in chunk.choices:
                if ch.delta.content:
                    out.append(ch.delta.content)
        return "".join(out)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        texts = list(pool.map(stream_one, prompts))
    for i, (prompt, t) in enumerate(zip(prompts, texts)):
        want = alone(prompt, 48, True)
        check(f"concurrent stream {i} = ember --chat -p", t == want, f"{t!r} vs {want!r}")

    try:
        openai.OpenAI(base_url=f"{base}/v1", api_key="wrong").models.list()
        check("wrong key is refused", False)
    except openai.AuthenticationError:
        check("wrong key is refused", True)
    try:
        client.chat.completions.create(model="m", messages=[], max_tokens=4)
        check("empty messages is a 400", False)
    except openai.BadRequestError:
        check("empty messages is a 400", True)
finally:
    server.terminate()
    try:
        rc = server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        rc = None
print(f"server exit code after SIGTERM: {rc}")
if rc != 0:
    failures.append("exit code")
print("all checks passed" if not failures else f"{len(failures)} failed: {failures}")
sys.exit(1 if failures else 0)
