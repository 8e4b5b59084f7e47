"""Media I/O on PyAV: probe, reader (decode thread side), writer (encode + stream copy)."""
