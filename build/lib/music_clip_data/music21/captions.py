"""Three template sentences per clip in the thesis' roles: sentiment, theme, sentiment + genre.

Every word comes from the piece's real metadata (title, composer or collection, origin, song function, dance)
or from analysis of the clip as rendered (key and mode after transposition, tempo, voices, metre).
"""

from __future__ import annotations

from typing import Any

LANGUAGES = {"de": "German", "it": "Italian", "la": "Latin", "en": "English", "fr": "French",
             "nl": "Dutch", "cn": "Chinese", "es": "Spanish"}  # fmt: skip
COLLECTIONS = {
    "oneills1850": "O'Neill's Music of Ireland (1850)",
    "ryansMammoth": "Ryan's Mammoth Collection",
    "airdsAirs": "Aird's Selection of Airs",
    "essenFolksong": "the Essen folksong collection",
    "miscFolk": "a folk tune book",
}


def mood(key_mode: str, bpm: float) -> str:
    """A sentiment word pair from mode and pace (the only affect cues a score without text gives)."""
    colour = "bright" if key_mode.endswith("major") else "sombre" if key_mode.endswith("minor") else "calm"
    pace = "unhurried" if bpm < 85 else "steady" if bpm < 110 else "lively"
    return f"{colour} and {pace}"


def _voices(n: int) -> str:
    return "a single melodic line" if n <= 1 else f"{n} voices"


def template_sentences(facts: dict[str, Any]) -> list[str]:
    """Sentences from `facts`: title, composer, collection, style, key_mode, bpm, voices, metre, lyrics..."""
    title = facts.get("title") or "an untitled piece"
    key_mode = facts.get("key_mode") or "an unclear key"
    feeling = mood(key_mode, facts["bpm"])
    collection = COLLECTIONS.get(facts.get("collection", ""), facts.get("collection", ""))
    who = facts.get("composer") or (f"from {collection}" if collection else "")
    first = f"The mood is {feeling}, in {key_mode} at about {round(facts['bpm'])} beats per minute."
    if facts.get("lyrics"):
        words = " ".join(facts["lyrics"].split()[:8])
        lang = LANGUAGES.get(facts.get("language", ""), "")
        second = f'It sets a {lang + " " if lang else ""}text beginning "{words}" in "{title}"'
        second += f" by {who}." if facts.get("composer") else "."
    elif facts.get("parent_title"):
        second = (
            f'It is the "{title}" section of {facts["parent_title"]} by {who}, a setting of the Latin Mass.'
        )
    elif facts.get("dance"):
        second = f'It is the {facts["dance"]} "{title}" from {collection}.'
    elif facts.get("locale"):
        function = facts.get("function", "").split(",")[0].strip()
        kind = f"{function.lower()} song" if function else "folk song"
        second = f'It is the {kind} "{title}", collected in {facts["locale"]}.'
    else:
        second = f'It is "{title}" {"by " + who if facts.get("composer") else who}.'.replace("  ", " ")
    metre = facts.get("time_signature") or ""
    third = f"A {feeling} {facts['style_name']} for {_voices(int(facts.get('voices', 1)))}"
    third += f" in {metre} time." if metre and metre != "none" else "."
    return [first, second.replace(" .", "."), third]
