#!/usr/bin/env bash
# Serve an existing index with the models loaded and report what a server costs over it:
# seconds from start to /ready, RSS at ready and after 40 SQuAD v1.1 dev questions asked one
# at a time over HTTP (peak too), and POST /ask p50.
#   bash bench/serve_index.sh INDEX_ROOT INDEX_NAME [PORT]
# e.g. after `python bench/store_scale.py --sizes 1000000 --vectors real --keep runs/keep1m`:
#   bash bench/serve_index.sh runs/keep1m idx
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT_DIR=$1 NAME=$2 PORT=${3:-8777}
t0=$(date +%s.%N)
RAG_INDEX_ROOT=$ROOT_DIR RAG_INDEX_NAME=$NAME RAG_PORT=$PORT RAG_API_KEYS=bench-key \
  RAG_LOG_REQUESTS=false .venv/bin/rag serve >/dev/null 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 1200); do
  [ "$(curl -s -o /dev/null -w "%{http_code}" "localhost:$PORT/ready")" = "200" ] && break
  sleep 0.1
done
t1=$(date +%s.%N)
echo "start_to_ready_s $(python3 -c "print(round($t1 - $t0, 1))")"
grep -E "VmRSS|RssAnon|RssFile" /proc/$PID/status
PORT=$PORT .venv/bin/python - <<'PY'
import gzip, json, os, statistics, time, urllib.request
from pathlib import Path
squad = Path("..") / "shared" / "data" / "squad" / "dev-v1.1.json.gz"
data = json.load(gzip.open(squad))
questions = [q["question"] for a in data["data"][:10] for p in a["paragraphs"][:2] for q in p["qas"][:2]][:40]
url = f"http://localhost:{os.environ['PORT']}/ask"
times = []
for q in questions:
    req = urllib.request.Request(url, json.dumps({"question": q}).encode(), {"content-type": "application/json"})
    t = time.perf_counter()
    json.load(urllib.request.urlopen(req, timeout=120))
    times.append((time.perf_counter() - t) * 1000)
print("asks", len(times), "ask_p50_ms", round(statistics.median(times), 1))
PY
grep -E "VmRSS|VmHWM|RssAnon|RssFile" /proc/$PID/status
