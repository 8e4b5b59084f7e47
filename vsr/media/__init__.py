"""Media I/O with PyAV, no torch: probe, decode (VideoReader), encode (FrameWriter and its writers),
the other streams (StreamCopier), containers, colour, filters, image sequences, the ffmpeg binary."""
