"""Caption prompts: the thesis' Fig. 13 prompt, its future-work alternative, or a user's template.

The thesis' input is lyrics plus metadata. Fig. 13 names only the genre; the other facts a track has (title,
artist, album, date from its tags, and the descriptors measured on its audio) go into one more line,
`METADATA_LINE`, placed before the lyrics line of the built-in prompts. A track without them gets Fig. 13's
prompt exactly (and the same cached answer as before). A custom template places them with `{metadata}`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from music_clip_data.descriptors import as_facts

# Thesis Fig. 13, verbatim (an f-string there; the same text here with the same two placeholders).
THESIS_PROMPT = (
    "Write one sentence summarizing the sentiment of the lyrics of the song below.\n"
    "Write a second sentence summarizing the theme of the song.\n"
    "And a third one summarizing sentiment and genre.\n"
    "Genre is [{genre}].\n"
    'The song\'s lyrics are: " {lyrics} " '
)
# Thesis ch. 6 future work: a broader query, with the lyrics attached the way Fig. 13 attaches them.
LYRICS_COMMENT_PROMPT = (
    'Please comment on the given lyrics in 3-4 sentences.\nThe song\'s lyrics are: " {lyrics} " '
)

PROMPTS: dict[str, str] = {"thesis": THESIS_PROMPT, "lyrics-comment": LYRICS_COMMENT_PROMPT}
N_SENTENCES = 3  # the dataset's `sentences` column always has three (thesis SCL/STL positives)

_PLACEHOLDER = re.compile(r"\{(lyrics|genre|metadata)\}")
_LYRICS_LINE = "The song's lyrics are:"  # the built-in prompts' last line; the metadata line goes before it
METADATA_LINE = "What is known about the recording: {metadata}.\n"
METADATA_FIELDS = ("title", "artist", "album", "date")  # from the tags (or the source); in this order


def metadata_text(facts: Mapping[str, Any]) -> str:
    """A track's facts for the LLM: title, artist, album, date and the measured descriptors ("" if none)."""
    parts = [f"{name} {facts[name]!s}" for name in METADATA_FIELDS if str(facts.get(name) or "").strip()]
    measured = as_facts(facts.get("descriptors") or {})
    if measured:
        parts.append(f"measured on the audio: {measured}")
    return "; ".join(parts)


@dataclass(frozen=True)
class PromptSpec:
    """A template plus the sentence counts an answer to it may have."""

    name: str
    template: str
    min_sentences: int = N_SENTENCES
    max_sentences: int = N_SENTENCES
    metadata_line: bool = False  # built-ins: `METADATA_LINE` before the lyrics line when there is metadata

    def render(self, lyrics: str, genres: list[str], metadata: str = "") -> str:
        # One pass, so a `{genre}` inside the lyrics is left alone; unknown genre renders as `[]` (thesis).
        template = self.template
        if metadata and self.metadata_line and "{metadata}" not in template:
            template = template.replace(_LYRICS_LINE, METADATA_LINE + _LYRICS_LINE, 1)
        values = {"lyrics": lyrics, "genre": ", ".join(genres), "metadata": metadata}
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)

    def fit(self, sentences: list[str]) -> list[str] | None:
        """The three dataset sentences from an answer's sentences, or None when the count is wrong.

        A 4-sentence answer to the 3-4 sentence prompt keeps every word: its last two sentences become the
        third one, so `caption` (the three joined) is the whole answer.
        """
        if not self.min_sentences <= len(sentences) <= self.max_sentences:
            return None
        return sentences[: N_SENTENCES - 1] + [" ".join(sentences[N_SENTENCES - 1 :])]

    @property
    def expectation(self) -> str:
        if self.min_sentences == self.max_sentences:
            return str(self.min_sentences)
        return f"{self.min_sentences}-{self.max_sentences}"


def resolve_prompt(prompt: str) -> PromptSpec:
    """`thesis`, `lyrics-comment`, or a custom template with `{lyrics}` (optionally `{genre}`, `{metadata}`)."""
    if prompt == "thesis":
        return PromptSpec("thesis", THESIS_PROMPT, metadata_line=True)
    if prompt == "lyrics-comment":
        return PromptSpec("lyrics-comment", LYRICS_COMMENT_PROMPT, N_SENTENCES, N_SENTENCES + 1, True)
    if "{lyrics}" not in prompt:
        # Without the lyrics every track would get the same prompt, hence the same cached answer.
        raise ValueError(f"a custom caption prompt needs a {{lyrics}} placeholder: {prompt[:80]!r}")
    return PromptSpec("custom", prompt)
