"""Imported by the decode workers' fork server: compiles the descriptor kernels once, before any worker forks,
so every worker inherits them instead of paying seconds inside its first file's decode time limit."""

from music_clip_data.descriptors import warm_up

warm_up()
