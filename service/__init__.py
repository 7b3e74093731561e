"""The app's service layer that is not the engine: the request batcher (more moves here later)."""
