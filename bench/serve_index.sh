#!/usr/bin/env bash
# Serve an existing index with the models loaded and report what a server costs over it:
# seconds from start to /ready, memory at ready, while N SQuAD v1.1 dev questions are asked
# one at a time over HTTP (RSS, anonymous and file-backed, at 1/40/80/160/... questions; MiB,
# the kB of /proc/PID/status over 1024: reports before 2026-12-04 printed them as "MB"),
# its peak (VmHWM), POST /ask p50, what is resident after the questions by kind of mapping
# (vector segments, keyword postings, heap, other anonymous memory, libraries, other files),
# and RSS at rest 3 s after the last question (the heap's freed memory handed back,
# RAG_HEAP_TRIM_IDLE_S). Extra settings come from the environment.
#   [N=160] bash bench/serve_index.sh INDEX_ROOT INDEX_NAME [PORT]
# e.g. after `python bench/store_scale.py --sizes 1000000 --vectors real --keep runs/keep1m`:
#   bash bench/serve_index.sh runs/keep1m idx
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT_DIR=$1 NAME=$2 PORT=${3:-8777}
t0=$(date +%s.%N)
RAG_INDEX_ROOT=$ROOT_DIR RAG_INDEX_NAME=$NAME RAG_PORT=$PORT RAG_API_KEYS=bench-key \
  RAG_LOG_REQUESTS=false .venv/bin/rag serve >/dev/null 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true' EXIT  # wait: the port is free for the next run
for _ in $(seq 1 1200); do
  [ "$(curl -s -o /dev/null -w "%{http_code}" "localhost:$PORT/ready")" = "200" ] && break
  sleep 0.1
done
t1=$(date +%s.%N)
echo "start_to_ready_s $(python3 -c "print(round($t1 - $t0, 1))")"
PID=$PID PORT=$PORT N=${N:-160} .venv/bin/python - <<'PY'
import gzip, json, os, statistics, time, urllib.request
from pathlib import Path

def memory() -> str:
    fields = {}
    for line in open(f"/proc/{os.environ['PID']}/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            fields[key] = int(value.split()[0]) // 1024
    return " ".join(f"{k}={v}MiB" for k, v in fields.items())

def composition() -> str:
    """Resident MiB per kind of mapping (/proc/PID/smaps): the vector segments, the keyword
    engine's postings, the heap, other anonymous memory, shared libraries, other files."""
    kinds: dict[str, int] = {}
    kind = "other files"
    for line in open(f"/proc/{os.environ['PID']}/smaps"):
        head = line.split()
        if "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
            name = head[5] if len(head) > 5 else ""
            if name.endswith(".faiss"):
                kind = "vectors"
            elif "/keyword/" in name:
                kind = "keyword postings"
            elif name == "[heap]":
                kind = "heap"
            elif not name or name.startswith("["):
                kind = "anonymous"
            elif ".so" in name:
                kind = "libraries"
            else:
                kind = "other files"
        elif head[0] == "Rss:":
            kinds[kind] = kinds.get(kind, 0) + int(head[1])
    return " ".join(f"{k}={v // 1024}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))

def largest(count: int = 15) -> str:
    """The ``count`` mappings with the most resident MiB (a file by its name's last part and
    extension; anonymous ones by their size), to tell what a kind above is made of."""
    rows: dict[str, int] = {}
    name = ""
    for line in open(f"/proc/{os.environ['PID']}/smaps"):
        head = line.split()
        if "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
            low, high = (int(x, 16) for x in head[0].split("-"))
            path = head[5] if len(head) > 5 else ""
            if path and not path.startswith("["):
                base = path.rsplit("/", 1)[-1]
                name = "*." + base.rsplit(".", 1)[-1] if "/keyword/" in path or base.endswith(".faiss") else base
            else:
                name = f"{path or 'anon'} {(high - low) >> 20} MiB mapping"
        elif head[0] == "Rss:":
            rows[name] = rows.get(name, 0) + int(head[1])
    top = sorted(rows.items(), key=lambda kv: -kv[1])[:count]
    return "; ".join(f"{k}={v // 1024}" for k, v in top)

squad = Path("..") / "shared" / "data" / "squad" / "dev-v1.1.json.gz"
data = json.load(gzip.open(squad))
questions = [p["qas"][0]["question"] for a in data["data"] for p in a["paragraphs"]]
questions = questions[: int(os.environ["N"])]
url = f"http://localhost:{os.environ['PORT']}/ask"
print("at ready", memory())
times = []
for i, q in enumerate(questions, 1):
    req = urllib.request.Request(url, json.dumps({"question": q}).encode(), {"content-type": "application/json"})
    t = time.perf_counter()
    json.load(urllib.request.urlopen(req, timeout=120))
    times.append((time.perf_counter() - t) * 1000)
    if i == 1 or i % 40 == 0:
        print(f"after {i} questions", memory())
print("asks", len(times), "ask_p50_ms", round(statistics.median(times), 1))
print("resident after the questions, MiB by mapping:", composition())
print("largest mappings, resident MiB:", largest())
time.sleep(3)
print("at rest", memory())
PY
