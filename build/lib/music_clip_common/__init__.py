"""What every layer of MusicCLIP shares, without torch: atomic files, one lock, audio-file discovery, content
hashes, tag reading, the decode worker policy and the experiment's facts (profiles, window, budgets, paths).

The Hub files (`*_music_clip.py`) never import this package; it may import them (e.g. the list of objectives
lives in `configuration_music_clip.py`)."""
