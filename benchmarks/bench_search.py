"""Search and genre latency of the Space, measured against exact search in the same process.

    python benchmarks/bench_search.py                      # 1,000,000 synthetic 512-d embeddings, 2 cores
    python benchmarks/bench_search.py --n 100000 --queries 100
    python benchmarks/bench_search.py --classifier runs/quick/classifier   # genre timing with a real checkpoint

1. Text → music: the approximate FAISS index the Space builds for a library of `--n` tracks (same factory and
   search parameters, through `datasets`' `add_faiss_index`) against an exact `IndexFlatIP`: p50/p95 per query,
   the speed ratio, recall@10 against the exact answer, the index's build time and memory, and the whole text
   query (processor → text tower → index). The built index is cached under `--cache-dir` (keyed by its type,
   `--n` and `--seed`), so a re-run measures search without building again.
   The embeddings are clustered like real ones (random centres + noise, L2-normalised); queries are noisy copies
   of library items, as a caption is a noisy view of its track.
2. Upload → genre answer for a 30-s real clip (immich): decode → feature extractor → classifier → mel picture,
   the Genre tab's handler without HTTP.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import torch
from datasets import Dataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "space"))
sys.path.insert(0, str(ROOT))

from audio_input import decode_upload  # noqa: E402
from config import MAX_ANALYSED_SECONDS  # noqa: E402
from plots import mel_image  # noqa: E402

from music_clip_library.library_index import add_index, index_factory, set_search_params  # noqa: E402

DIM = 512
# Clusters of ~100 tracks with an item's cosine to its centre ≈ 0.7: neighbours cross IVF lists (an IVF index's
# recall depends on nprobe) and are near-ties inside their cluster. Tight clusters make any index look perfect;
# spread 2 (cosine ≈ 0.45) is near-random data on which no approximate index works (recall@10 0.36 at 100k).
CLUSTER_SIZE = 100
SPREAD = 1.0


def clustered_embeddings(n: int, clusters: int, spread: float, rng: np.random.Generator) -> np.ndarray:
    centres = rng.standard_normal((clusters, DIM), dtype=np.float32)
    out = np.empty((n, DIM), dtype=np.float32)
    step = 100_000
    for start in range(0, n, step):
        stop = min(n, start + step)
        out[start:stop] = centres[rng.integers(0, clusters, stop - start)]
        out[start:stop] += spread * rng.standard_normal((stop - start, DIM), dtype=np.float32)
    faiss.normalize_L2(out)
    return out


def percentiles(seconds: list[float]) -> str:
    ms = np.asarray(seconds) * 1000
    return f"p50 {np.percentile(ms, 50):7.2f} ms   p95 {np.percentile(ms, 95):7.2f} ms"


def time_queries(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[list[float], np.ndarray]:
    """One query at a time, as a visitor sends them."""
    times, found = [], []
    for q in queries:
        start = time.perf_counter()
        _, ids = index.search(q[None], k)
        times.append(time.perf_counter() - start)
        found.append(ids[0])
    return times, np.stack(found)


def recall_at(k: int, approx: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a[:k]) & set(e[:k])) / k for a, e in zip(approx, exact)]))


def rss_mb() -> float:
    """Resident memory of this process now (Linux), MB."""
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:")) / 1024


def build_or_load(emb: np.ndarray, cache: Path) -> tuple[faiss.Index, str]:
    """The Space's approximate index over `emb` (built through `datasets`, as the Space does), or the cached one."""
    if cache.is_file():
        started = time.perf_counter()
        index = faiss.read_index(str(cache))
        return index, f"loaded from the cache {cache} in {time.perf_counter() - started:.1f} s"
    started, cpu, before = time.perf_counter(), time.process_time(), rss_mb()
    column = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), DIM)
    table = Dataset(pa.table({"audio_embedding": column}))
    add_index(table, "audio_embedding", approximate=True)
    index = table.get_index("audio_embedding").faiss_index
    built, cpu = time.perf_counter() - started, time.process_time() - cpu
    cache.parent.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(cache.with_suffix(".partial")))
    os.replace(cache.with_suffix(".partial"), cache)
    size = cache.stat().st_size / 2**20
    return index, (
        f"built in {built:.1f} s ({cpu:.0f} CPU-s: on a loaded machine the wall time grows, not this) through "
        f"datasets.add_faiss_index at load {os.getloadavg()[0]:.1f}; index {size:,.0f} MB (its file), process "
        f"memory +{rss_mb() - before:,.0f} MB while building; cached as {cache}"
    )


def probe_settings(params: str) -> list[str]:
    """The Space's search parameters and a narrower and a wider beam around them."""
    key, value = params.split(",")[0].split("=")
    rest = params[len(f"{key}={value}") :]
    return [f"{key}={v}{rest}" for v in sorted({int(value) // 2, int(value), int(value) * 2})]


def exact_answer(emb: np.ndarray, queries: np.ndarray, k: int, cache: Path) -> tuple[list[float], np.ndarray]:
    """Exact top-k and per-query times of `IndexFlatIP`, cached beside the index (the same data every run)."""
    if cache.is_file():
        with np.load(cache) as data:
            print(f"exact answers and times from the cache {cache} (measured when it was written)")
            return data["times"].tolist(), data["ids"]
    exact = faiss.IndexFlatIP(DIM)
    exact.add(emb)
    times, ids = time_queries(exact, queries, k)
    del exact  # 2 GB at 1M: free it before the approximate index copies the vectors
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache.with_suffix(".partial.npz"), times=np.asarray(times), ids=ids)
    os.replace(cache.with_suffix(".partial.npz"), cache)
    return times, ids


def bench_index(n: int, n_queries: int, k: int, seed: int, cache_dir: Path) -> faiss.Index:
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    emb = clustered_embeddings(n, clusters=max(10, n // CLUSTER_SIZE), spread=SPREAD, rng=rng)
    picks = rng.integers(0, n, n_queries)
    queries = emb[picks] + 0.05 * rng.standard_normal((n_queries, DIM), dtype=np.float32)
    faiss.normalize_L2(queries)
    print(f"{n:,} embeddings of {DIM} d generated in {time.perf_counter() - started:.1f} s")

    exact_times, exact_ids = exact_answer(
        emb, queries, k, cache_dir / f"exact-n{n}-seed{seed}-q{n_queries}-k{k}.npz"
    )

    factory, params = index_factory(n, approximate=True)
    slug = "".join(c if c.isalnum() else "_" for c in factory)
    approx, how = build_or_load(emb, cache_dir / f"{slug}-n{n}-seed{seed}.faiss")
    del emb
    print(f"approximate index {factory}: {how}")

    print(f"\ntext→music search, {n_queries} single queries, top {k}, {faiss.omp_get_max_threads()} threads")
    print(f"  exact IndexFlatIP{'':<30} {percentiles(exact_times)}")
    for setting in probe_settings(params):
        set_search_params(approx, setting)
        times, ids = time_queries(approx, queries, k)
        ratio = np.median(exact_times) / np.median(times)
        mark = "  <- the Space's setting" if setting == params else ""
        print(
            f"  {factory} {setting:<24} {percentiles(times)}   {ratio:6.1f}× faster than exact (p50)   "
            f"recall@{k} {recall_at(k, ids, exact_ids):.3f}{mark}"
        )
    set_search_params(approx, params)
    return approx


def load_contrastive(model_ref: str | None):
    """The model and processor the Space would load, or a fresh one with the packaged MiniLM tower."""
    if model_ref:  # the Space's own loader: a local folder, or hub:owner/name@revision
        from inference import ContrastiveModel

        loaded = ContrastiveModel(model_ref)
        return loaded.model, loaded.processor, model_ref
    from transformers import AutoTokenizer

    from feature_extraction_music_clip import MusicClipFeatureExtractor
    from modeling_music_clip import MusicClipModel, default_text_tower
    from processing_music_clip import MusicClipProcessor

    model = MusicClipModel.from_text_pretrained()
    fe = MusicClipFeatureExtractor.from_model_config(model.config)
    processor = MusicClipProcessor(fe, AutoTokenizer.from_pretrained(default_text_tower()))
    return (
        model.eval(),
        processor,
        "a fresh MusicClipModel with the packaged MiniLM tower (a trained one costs the same)",
    )


def bench_text_query(index: faiss.Index, model_ref: str | None, n_queries: int, k: int) -> None:
    model, processor, origin = load_contrastive(model_ref)
    words = ["calm", "piano", "energetic", "guitar", "sad", "ballad", "folk", "choir", "fiddle", "dance"]
    rng = np.random.default_rng(1)
    texts = [" ".join(rng.choice(words, 6)) for _ in range(n_queries)]
    times = []
    with torch.inference_mode():
        for text in texts:
            start = time.perf_counter()
            tokens = processor(text=[text])
            z = model.get_text_features(
                input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
            )
            q = torch.nn.functional.normalize(z, dim=-1).numpy().astype(np.float32)
            index.search(q, k)
            times.append(time.perf_counter() - start)
    print(f"\nwhole text query (processor → text tower → index), {origin}:\n  {percentiles(times)}")


def load_classifier(classifier_ref: str | None):
    if classifier_ref:
        from inference import GenreClassifier

        loaded = GenreClassifier(classifier_ref)
        return loaded.model, loaded.feature_extractor, classifier_ref
    from configuration_music_clip import MusicClipConfig
    from feature_extraction_music_clip import MusicClipFeatureExtractor
    from modeling_music_clip import MusicClipForAudioClassification

    labels = ["country", "hip hop", "indie", "metal", "pop", "punk", "rock"]
    config = MusicClipConfig(num_labels=len(labels), id2label=dict(enumerate(labels)))
    fe = MusicClipFeatureExtractor.from_model_config(config)
    origin = "a fresh classifier at the thesis' 4.5-min window (a finetuned one costs the same)"
    return MusicClipForAudioClassification(config).eval(), fe, origin


def bench_genre(classifier_ref: str | None, repeats: int) -> None:
    import immich_memories_music

    model, fe, origin = load_classifier(classifier_ref)
    clip = sorted(Path(immich_memories_music.__file__).parent.glob("tracks/*/*.opus"))[0]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        wave, _ = decode_upload(str(clip), fe, MAX_ANALYSED_SECONDS)  # the Space's own reading
        mel = fe.log_mel(wave)
        feats = fe.window([mel])
        with torch.inference_mode():
            model(input_features=feats["input_features"], window_mask=feats["window_mask"]).logits.softmax(-1)
        mel_image(mel, fe.sampling_rate, fe.hop_length)
        times.append(time.perf_counter() - start)
    print(f"\nupload → genre answer, {clip.name} ({len(wave) / fe.sampling_rate:.1f} s), {origin}:")
    print(f"  {percentiles(times)}   (first call {times[0] * 1000:.0f} ms; decode, mels, CNN, picture)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="synthetic library size")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--threads", type=int, default=2, help="FAISS and torch threads (the target: 2 cores)"
    )
    parser.add_argument("--model", default=None, help="model folder or Hub id (default: a fresh model)")
    parser.add_argument("--classifier", default=None, help="classifier folder or Hub id (default: fresh)")
    parser.add_argument("--genre-repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path.home() / ".cache" / "musicclip" / "bench_search",
        help="where built indexes are cached",
    )
    args = parser.parse_args()
    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    print(f"{os.cpu_count()} CPUs visible, {args.threads} threads used; faiss {faiss.__version__}")
    print(f"load average at start (other processes on the machine): {os.getloadavg()[0]:.1f}")
    index = bench_index(args.n, args.queries, args.k, args.seed, args.cache_dir)
    bench_text_query(index, args.model, min(args.queries, 100), args.k)
    bench_genre(args.classifier, args.genre_repeats)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
