"""Split runs: plan (cut at keyframes), worker (one segment), workdir (records, resume), join (remux),
schedule (segments on this process or on Ray actors, files joined as they complete)."""
