"""Farm job: upscale many videos on every GPU of a Ray cluster, in keyframe segments, resumably.

Run it on any machine of the cluster, or submit it as a Ray job (the job's driver runs on the head):

    python pipelines/farm.py films/*.mkv --output-dir /shared/out --segment-seconds 60
    ray job submit --address http://HEAD:8265 -- python pipelines/farm.py --manifest /shared/list.tsv \
        --work-dir /shared/vsr-work

All of `vsr run`'s options apply (model, encoding, --config presets). Rerunning the same command
resumes: finished outputs are skipped and unfinished files reuse their finished segments. This file
is the job's entry point only; the work lives in vsr.jobs.farm (`vsr farm` is the same command).
"""

from __future__ import annotations

import os
import sys

from vsr.cli import main as vsr_main


def main(argv: list[str]) -> int:
    args = ["farm", *argv]
    if os.environ.get("RAY_ADDRESS") and "--ray-address" not in argv:
        args += ["--ray-address", os.environ["RAY_ADDRESS"]]  # set by `ray job submit` for its driver
    return vsr_main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
