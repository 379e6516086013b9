"""Helpers for the bundled music21 corpus source: styles, score flattening, MIDI, rendering, captions."""
