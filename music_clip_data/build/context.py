"""What every build stage reads: the options, the output and cache folders, the feature extractor, the rules."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from music_clip_data.decode import DecodeSettings
from music_clip_data.sources import SourceOptions

CACHE_DIR_NAME = ".cache"


def load_feature_extractor(path: str | None) -> Any:
    from feature_extraction_music_clip import MusicClipFeatureExtractor

    if path and not Path(path).is_dir():  # else from_pretrained would look for it on the Hub
        raise ValueError(f"--feature-extractor {path}: not found (a folder with preprocessor_config.json)")
    return MusicClipFeatureExtractor.from_pretrained(path) if path else MusicClipFeatureExtractor()


@dataclass
class BuildContext:
    """One build's fixed inputs; `timings` collects each stage's seconds for the summary."""

    args: argparse.Namespace  # build_dataset.parse_args
    output: Path
    cache: Path
    fe: Any  # the feature extractor (MusicClipFeatureExtractor or any with its interface)
    settings: DecodeSettings
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BuildContext:
        output = Path(args.output)
        cache = Path(args.cache_dir) if args.cache_dir else output / CACHE_DIR_NAME
        settings = DecodeSettings(args.min_seconds, args.max_seconds, args.silence_dbfs)
        return cls(args, output, cache, load_feature_extractor(args.feature_extractor), settings)

    def source_options(self) -> SourceOptions:
        a = self.args
        return SourceOptions(
            a.audio_dir, a.metadata, a.size, self.cache / a.source, a.num_proc, a.seed,
            a.packages, a.debian_part, a.label_by_package,
        )  # fmt: skip
