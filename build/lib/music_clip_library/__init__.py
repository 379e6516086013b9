"""`music-clip index` / `music-clip search`: a folder of your own music → a searchable index folder."""
