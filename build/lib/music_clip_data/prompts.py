"""Caption prompts: the thesis' Fig. 13 prompt, its future-work alternative, or a user's template."""

from __future__ import annotations

import re
from dataclasses import dataclass

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

_PLACEHOLDER = re.compile(r"\{(lyrics|genre)\}")


@dataclass(frozen=True)
class PromptSpec:
    """A template plus the sentence counts an answer to it may have."""

    name: str
    template: str
    min_sentences: int = N_SENTENCES
    max_sentences: int = N_SENTENCES

    def render(self, lyrics: str, genres: list[str]) -> str:
        # One pass, so a `{genre}` inside the lyrics is left alone; unknown genre renders as `[]` (thesis).
        values = {"lyrics": lyrics, "genre": ", ".join(genres)}
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], self.template)

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
    """`thesis`, `lyrics-comment`, or a custom template with `{lyrics}` (and optionally `{genre}`)."""
    if prompt == "thesis":
        return PromptSpec("thesis", THESIS_PROMPT)
    if prompt == "lyrics-comment":
        return PromptSpec("lyrics-comment", LYRICS_COMMENT_PROMPT, N_SENTENCES, N_SENTENCES + 1)
    if "{lyrics}" not in prompt:
        # Without the lyrics every track would get the same prompt, hence the same cached answer.
        raise ValueError(f"a custom caption prompt needs a {{lyrics}} placeholder: {prompt[:80]!r}")
    return PromptSpec("custom", prompt)
