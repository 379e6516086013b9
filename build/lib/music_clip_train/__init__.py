"""Training, sweep and evaluation for MusicCLIP (the `train.py` CLI's parts)."""
