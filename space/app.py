"""MusicCLIP Space: genre, zero-shot tags, text ↔ music search and a map of the library.

Run locally: `python space/app.py [--model DIR|hub:ID@REV] [--classifier DIR|hub:ID@REV] [--library DIR|hub:ID]...`
(`--library` repeated: several datasets, e.g. the renders and the real tracks, searched as one library).
"""

from __future__ import annotations

import functools
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# The Space's own modules, also when run from elsewhere; then the repository (its `music_clip_library` package
# and Hub files) when run from a checkout. A deployed Space carries a copy of both next to this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parent.parent))

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402
from clip_reader import ClipReader, Limits, ReadError  # noqa: E402
from config import (  # noqa: E402
    CONCURRENCY,
    MAKE_CLASSIFIER,
    MAKE_LIBRARY,
    MAKE_MODEL,
    MAX_ANALYSED_SECONDS,
    MAX_LABEL_CHARS,
    MAX_LABELS,
    MAX_QUERY_CHARS,
    MAX_UPLOAD_MB,
    QUEUE_SIZE,
    WORKER_MEMORY_MB,
    WORKER_START_SECONDS,
    SpaceConfig,
    missing,
    parse_args,
)
from inference import (  # noqa: E402
    Clip,
    ContrastiveModel,
    GenreClassifier,
    library_match_floor,
    ood_note,
    weak_match_note,
)
from plots import mel_image  # noqa: E402

from music_clip_library.library_index import Hit, Library  # noqa: E402

MAX_RESULTS = 10
DEFAULT_LABELS = "sad piano ballad, aggressive metal, lullaby, upbeat electronic dance, calm acoustic guitar"
# Every listed or played track shows its licence and attribution (CC-BY requires the credit) where it has them.
RESULT_COLUMNS = ["rank", "score", "title", "genre", "caption", "track_id", "license", "attribution"]
CAPTION_COLUMNS = ["rank", "score", "caption", "title", "track_id", "license", "attribution"]


class Services:
    """Whatever of model, classifier and library could be loaded, with a visitor-readable reason for the rest."""

    def __init__(self, cfg: SpaceConfig):
        self.cfg = cfg
        self.model: ContrastiveModel | None = None
        self.classifier: GenreClassifier | None = None
        self.library: Library | None = None
        self.problems: dict[str, str] = {}
        self.model = self._load("model", cfg.model, MAKE_MODEL, lambda r: ContrastiveModel(r, cfg.device))
        self.classifier = self._load(
            "classifier", cfg.classifier, MAKE_CLASSIFIER, lambda r: GenreClassifier(r, cfg.device)
        )
        if self.model is None:
            self.problems["library"] = "The library needs the contrastive model: " + self.problems["model"]
        else:
            self.library = self._load("library", cfg.library, MAKE_LIBRARY, lambda r: Library(r, self.model))
        self.match_floor = library_match_floor(self.library) if self.library else None
        limits = Limits(cfg.request_seconds, WORKER_START_SECONDS, WORKER_MEMORY_MB)
        self.reader = ClipReader(cfg.read_workers, limits, MAX_ANALYSED_SECONDS)

    def _load(self, what: str, ref: str | tuple[str, ...], command: str, loader: Callable):
        refs = (ref,) if isinstance(ref, str) else ref
        message = next(
            filter(None, (missing(r, what, command, remote_code=what != "library") for r in refs)), None
        )
        if message:
            self.problems[what] = message
            return None
        try:
            return loader(ref)
        except Exception as err:  # keep serving the other tabs; say what broke
            self.problems[what] = (
                f"Could not load the {what} from `{', '.join(refs)}`: {type(err).__name__}: {err}"
            )
            print(self.problems[what], file=sys.stderr)
            return None

    def need(self, what: str):
        service = getattr(self, what)
        if service is None:
            raise gr.Error(self.problems[what], title=f"No {what}")
        return service

    def read_clip(self, path: str | None, what: str) -> tuple[Clip, str]:
        """The upload read in a worker process with the `what` ("model"/"classifier") feature extractor."""
        try:
            return self.reader.read(path, getattr(self.cfg, what))
        except ReadError as err:
            raise gr.Error(str(err), title="Cannot use this clip") from None


def for_visitors(handler: Callable) -> Callable:
    """An unexpected error becomes a plain message on the page; its details go to the server log."""

    @functools.wraps(handler)
    def answer(*args):
        try:
            return handler(*args)
        except gr.Error:
            raise
        except Exception:
            traceback.print_exc()
            raise gr.Error(
                "Something went wrong on the server while answering. Please try again.", title="Error"
            ) from None

    return answer


def parse_labels(text: str) -> list[str]:
    labels = list(dict.fromkeys(label.strip() for label in (text or "").split(",") if label.strip()))
    if len(labels) < 2:
        raise gr.Error("Type at least two labels, separated by commas.", title="Labels")
    if len(labels) > MAX_LABELS:
        raise gr.Error(f"{len(labels)} labels: at most {MAX_LABELS} at once.", title="Labels")
    if any(len(label) > MAX_LABEL_CHARS for label in labels):
        raise gr.Error(f"Keep each label under {MAX_LABEL_CHARS} characters.", title="Labels")
    return labels


def results_table(hits: list[Hit], columns: list[str]) -> pd.DataFrame:
    rows = [{**vars(h), "score": round(h.score, 4)} for h in hits]
    return pd.DataFrame(rows, columns=columns)


def players(hits: list[Hit]) -> list:
    """One audio player per result slot; unused slots hidden (plain updates: building components is slow)."""
    updates = []
    for slot in range(MAX_RESULTS):
        if slot < len(hits) and hits[slot].audio_path:
            h = hits[slot]
            label = f"{h.rank}. {h.title or h.track_id} · {h.genre or 'no genre'} · score {h.score:.3f}"
            label += f" · {credit(h.license, h.attribution)}" if h.license or h.attribution else ""
            updates.append(gr.update(value=h.audio_path, label=label, visible=True))
        else:
            updates.append(gr.update(value=None, visible=False))
    return updates


def credit(license: str, attribution: str) -> str:
    """The "licence · attribution" line of a library track ("" when its row names neither)."""
    return " · ".join(filter(None, [license and f"licence {license}", attribution]))


def clip_handlers(services: Services) -> dict:
    """The tabs that read one clip: its genre and its zero-shot labels."""

    @for_visitors
    def genre(path: str | None):
        classifier = services.need("classifier")
        started = time.perf_counter()
        clip, note = services.read_clip(path, "classifier")
        probs, flagged = classifier.classify(clip)
        fe = classifier.feature_extractor
        image = mel_image(clip.mel, fe.sampling_rate, fe.hop_length)
        took = f"Answered in {time.perf_counter() - started:.2f} s. {note}".strip()
        return probs, image, "\n\n".join(filter(None, [ood_note(flagged), took]))

    @for_visitors
    def zero_shot(path: str | None, labels_text: str):
        model = services.need("model")
        labels = parse_labels(labels_text)
        clip, note = services.read_clip(path, "model")
        scored = note or f"{len(labels)} labels scored."
        return model.zero_shot(clip, labels), "\n\n".join(
            filter(None, [ood_note(model.out_of_distribution(clip)), scored])
        )

    return {"genre": genre, "zero_shot": zero_shot}


def library_handlers(services: Services) -> dict:
    """The tabs that search the library or draw its map."""

    @for_visitors
    def search_text(query: str, k: float):
        library = services.need("library")
        query = (query or "").strip()
        if not query:
            raise gr.Error(
                "Type a description of the music you want, e.g. 'calm acoustic guitar'.", title="Search"
            )
        if len(query) > MAX_QUERY_CHARS:
            raise gr.Error(f"Keep the description under {MAX_QUERY_CHARS} characters.", title="Search")
        hits = library.search_audio(library.model.text_embeddings([query])[0], int(k))
        warning = weak_match_note(hits[0].score if hits else None, services.match_floor)
        return results_table(hits, RESULT_COLUMNS), warning, *players(hits)

    @for_visitors
    def search_clip(path: str | None, k: float):
        library = services.need("library")
        model = library.model
        clip, note = services.read_clip(path, "model")
        embedding = model.audio_embeddings([clip.mel])[0]
        hits = library.search_audio(embedding, int(k))
        captions = library.search_captions(embedding, int(k))
        return (
            results_table(hits, RESULT_COLUMNS),
            results_table(captions, CAPTION_COLUMNS),
            "\n\n".join(filter(None, [ood_note(model.out_of_distribution(clip)), note])),
            *players(hits),
        )

    @for_visitors
    def library_map(method: str):
        library = services.need("library")
        points = pd.DataFrame(library.projection(method))
        summary = (
            f"{len(library)} tracks ({len(library.captions)} with captions), genres: "
            f"{', '.join(library.genres) or 'none'}. {method} of the normalised audio embeddings."
        )
        return points, summary

    return {"search_text": search_text, "search_clip": search_clip, "library_map": library_map}


def _header(services: Services) -> None:
    gr.Markdown(
        "# MusicCLIP\nAn audio encoder pretrained against LLM pseudo-captions, then finetuned for genre. "
        f"Upload or record a clip (files up to {MAX_UPLOAD_MB} MB; the first "
        f"{MAX_ANALYSED_SECONDS / 60:.1f} minutes are analysed; video files work through their audio track; "
        f"reading a file may take at most {services.cfg.request_seconds:g} s)."
    )
    gr.Markdown(
        f"Model `{services.cfg.model}` · classifier `{services.cfg.classifier}` · library "
        f"`{', '.join(services.cfg.library)}`" + "".join(f"\n\n> ⚠️ {p}" for p in services.problems.values()),
        elem_id="status",
    )


def _clip_input(elem_id: str) -> gr.Audio:
    """Where a visitor gives a clip: an upload or a recording, handed over as a file path."""
    return gr.Audio(sources=["upload", "microphone"], type="filepath", label="Clip", elem_id=elem_id)


def _players() -> list[gr.Audio]:
    """Hidden players, one per possible result; `players` fills and shows as many as there are hits."""
    return [gr.Audio(visible=False, interactive=False) for _ in range(MAX_RESULTS)]


def _genre_tab(genre) -> None:
    with gr.Tab("Genre", elem_id="tab-genre"):
        with gr.Row():
            with gr.Column():
                genre_audio = _clip_input("genre-audio")
                genre_button = gr.Button("Classify", variant="primary", elem_id="genre-button")
            with gr.Column():
                genre_label = gr.Label(label="Genre probabilities", elem_id="genre-label")
                genre_note = gr.Markdown(elem_id="genre-note")
        genre_mel = gr.Image(label="Mel spectrogram", elem_id="genre-mel", interactive=False)
        genre_button.click(genre, genre_audio, [genre_label, genre_mel, genre_note], api_name="genre")


def _zero_shot_tab(zero_shot) -> None:
    with gr.Tab("Zero-shot", elem_id="tab-zero-shot"):
        with gr.Row():
            with gr.Column():
                zs_audio = _clip_input("zs-audio")
                zs_labels = gr.Textbox(
                    value=DEFAULT_LABELS,
                    label="Labels, separated by commas",
                    lines=2,
                    elem_id="zs-labels",
                )
                zs_button = gr.Button("Score labels", variant="primary", elem_id="zs-button")
            with gr.Column():
                zs_label = gr.Label(num_top_classes=10, label="Label scores", elem_id="zs-label")
                zs_note = gr.Markdown(elem_id="zs-note")
        zs_button.click(zero_shot, [zs_audio, zs_labels], [zs_label, zs_note], api_name="zero_shot")


def _search_tab(search_text, search_clip) -> None:
    with gr.Tab("Search", elem_id="tab-search"):
        gr.Markdown("### Describe the music → tracks of the library")
        with gr.Row():
            query = gr.Textbox(
                label="Description", placeholder="calm acoustic guitar", elem_id="search-query"
            )
            k_text = gr.Slider(1, MAX_RESULTS, value=5, step=1, label="Results", elem_id="search-k")
        text_button = gr.Button("Search", variant="primary", elem_id="search-button")
        text_table = gr.Dataframe(headers=RESULT_COLUMNS, label="Tracks", wrap=True, elem_id="search-results")
        text_note = gr.Markdown(elem_id="search-note")
        with gr.Column():
            text_players = _players()
        text_button.click(
            search_text, [query, k_text], [text_table, text_note, *text_players], api_name="search_text"
        )
        query.submit(search_text, [query, k_text], [text_table, text_note, *text_players], api_name=False)

        gr.Markdown("### A clip → similar tracks and the captions that fit it")
        with gr.Row():
            clip_audio = _clip_input("clip-audio")
            k_clip = gr.Slider(1, MAX_RESULTS, value=5, step=1, label="Results", elem_id="clip-k")
        clip_button = gr.Button("Find similar", variant="primary", elem_id="clip-button")
        clip_note = gr.Markdown(elem_id="clip-note")
        with gr.Row():
            clip_table = gr.Dataframe(headers=RESULT_COLUMNS, label="Similar tracks", wrap=True)
            caption_table = gr.Dataframe(headers=CAPTION_COLUMNS, label="Best captions", wrap=True)
        with gr.Column():
            clip_players = _players()
        clip_button.click(
            search_clip,
            [clip_audio, k_clip],
            [clip_table, caption_table, clip_note, *clip_players],
            api_name="search_clip",
        )


def _map_tab(library_map) -> None:
    with gr.Tab("Library map", elem_id="tab-map") as map_tab:
        method = gr.Radio(["PCA", "t-SNE"], value="PCA", label="Projection", elem_id="map-method")
        scatter = gr.ScatterPlot(
            x="x",
            y="y",
            color="genre",
            tooltip=["title", "genre", "track_id", "license", "attribution"],
            height=480,
            elem_id="map",
        )
        map_note = gr.Markdown(elem_id="map-note")
        method.change(library_map, method, [scatter, map_note], api_name="library_map")
        map_tab.select(library_map, method, [scatter, map_note], api_name=False)


def build_ui(services: Services) -> gr.Blocks:
    handlers = {**clip_handlers(services), **library_handlers(services)}
    with gr.Blocks(title="MusicCLIP", analytics_enabled=False) as demo:
        _header(services)
        _genre_tab(handlers["genre"])
        _zero_shot_tab(handlers["zero_shot"])
        _search_tab(handlers["search_text"], handlers["search_clip"])
        _map_tab(handlers["library_map"])
    return demo


def warm_library(cfg: SpaceConfig) -> None:
    """`--warm-library`: embed the library's audio and captions and build its FAISS indexes into the Space's
    cache (the code a start runs), then exit, so the next start loads them instead of embedding."""
    started = time.perf_counter()
    library = Library(cfg.library, ContrastiveModel(cfg.model, cfg.device))
    print(
        f"library cache ready: {len(library)} tracks, {len(library.captions)} captions in {library.cache_dir} "
        f"({time.perf_counter() - started:.0f} s)"
    )


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    if cfg.warm_library:
        warm_library(cfg)
        return
    services = Services(cfg)
    demo = build_ui(services)
    allowed = [str(services.library.audio_dir), *services.library.audio_roots] if services.library else []
    services.reader.wait_ready()  # it started with Services: its imports overlapped the model loading
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE).launch(
        server_name=cfg.host,
        server_port=cfg.port,
        share=False,
        show_error=False,  # gr.Error messages are still shown; anything else would show internals
        max_file_size=f"{MAX_UPLOAD_MB}mb",
        allowed_paths=allowed,
        theme=gr.themes.Soft(),
        footer_links=["api"],
    )


if __name__ == "__main__":
    main()
