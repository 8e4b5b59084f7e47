"""Jobs: a session (session), one file — video, image or split run — (file), split runs (split/: plan,
worker, workdir, join, schedule), many files (farm), output naming and checks (outputs), progress."""
