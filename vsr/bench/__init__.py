"""`vsr bench`: a model's speed on a device against the official-style baseline (run), its measuring
helpers (measure) and the clip and stage timers of the media side (media)."""
