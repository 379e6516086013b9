"""Captioning throughput against the local fake server answering with a fixed latency (issue 3, Performance).

    python benchmarks/bench_captioning.py [--latency 1.0] [--requests 300] [--concurrency 32]

Runs a 1-thread baseline and the concurrent run in the same process against the same server, each with a
fresh cache, and prints requests/s, lost items (inputs without a 3-sentence answer) and duplicate requests
(requests beyond one per distinct prompt).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from llm_server import FakeLLMServer  # noqa: E402

from music_clip_data.captioning import CaptionInput, CaptionSettings, caption_many  # noqa: E402
from music_clip_data.prompts import resolve_prompt  # noqa: E402


def run(server: FakeLLMServer, n: int, concurrency: int, offset: int) -> dict[str, float]:
    items = [CaptionInput(f"t{offset + i}", f"bench lyrics {offset + i}", ["rock"]) for i in range(n)]
    spec = resolve_prompt("thesis")
    before = server.total_requests
    with tempfile.TemporaryDirectory() as cache:
        settings = CaptionSettings(
            base_url=server.base_url,
            model="bench",
            api_key_env="BENCH_LLM_KEY",
            concurrency=concurrency,
            timeout_s=30,
            cache_dir=Path(cache),
            progress=False,
        )
        start = time.perf_counter()
        results = caption_many(items, settings)
        elapsed = time.perf_counter() - start
    requests = server.total_requests - before
    lost = sum(r.status != "new" or r.sentences is None or len(r.sentences) != 3 for r in results)
    duplicates = sum(max(0, server.counts[spec.render(i.lyrics, i.genres)] - 1) for i in items)
    return {
        "items": n,
        "requests": requests,
        "seconds": elapsed,
        "rps": requests / elapsed,
        "lost": lost,
        "dup": duplicates,
    }


def show(name: str, r: dict[str, float]) -> None:
    print(
        f"{name:<16} {r['items']:>5} items {r['requests']:>5} requests in {r['seconds']:6.2f} s = "
        f"{r['rps']:6.2f} req/s, lost {r['lost']}, duplicates {r['dup']}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--latency", type=float, default=1.0, help="server seconds per answer")
    p.add_argument("--requests", type=int, default=300, help="items in the concurrent run")
    p.add_argument("--baseline-requests", type=int, default=5, help="items in the 1-thread run")
    p.add_argument("--concurrency", type=int, default=32)
    args = p.parse_args()
    os.environ.setdefault("BENCH_LLM_KEY", "sk-bench")

    with FakeLLMServer(latency_s=args.latency) as server:
        base = run(server, args.baseline_requests, 1, 0)
        fast = run(server, args.requests, args.concurrency, args.baseline_requests)
    print(f"server latency {args.latency} s, {os.cpu_count()} CPUs")
    show("1 thread", base)
    show(f"{args.concurrency} threads", fast)
    print(
        f"speed-up {fast['rps'] / base['rps']:.1f}x; target >= 20 req/s with 0 lost, 0 duplicates: ", end=""
    )
    print("met" if fast["rps"] >= 20 and fast["lost"] == 0 and fast["dup"] == 0 else "NOT met")


if __name__ == "__main__":
    main()
