"""Dataset building for MusicCLIP: sources, genre mapping, captioning, Parquet + dataset card."""
