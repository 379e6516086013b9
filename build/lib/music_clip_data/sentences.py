"""Sentence splitting for caption answers: pysbd, so abbreviations, decimals and quotes stay whole."""

from __future__ import annotations

import re

import pysbd

# "1. …", "2) …", "- …" at the start of a sentence: list formatting some models add, not content.
_LIST_MARKER = re.compile(r"^\s*(?:\d{1,2}[.)]|[-*\u2022])\s+")


def split_sentences(text: str) -> list[str]:
    """The sentences of `text`, stripped, without list markers and without fragments that hold no word."""
    # A Segmenter keeps per-text state, so each call gets its own (they are cheap; threads call this).
    segments = pysbd.Segmenter(language="en", clean=False).segment(text)
    sentences = []
    for segment in segments:
        sentence = _LIST_MARKER.sub("", segment.strip()).strip()
        if any(ch.isalnum() for ch in sentence):
            sentences.append(sentence)
    return sentences
