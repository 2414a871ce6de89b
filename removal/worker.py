"""The removal job process: ``accelerate launch --config_file CFG -m removal.worker JOB_DIR``.

Reads ``JOB_DIR/spec.json`` (a ``TrainSpec``), trains, and writes ``progress.json`` after each
step and ``result.json`` at the end (both replaced atomically, so a reader never sees half a
file). It runs at low priority (nice 10) on ``spec.threads`` torch threads (1 by default): on a
2-core machine it takes at most one core, and serving wins every contended moment. A crash
leaves no ``result.json``: the gateway marks the job failed and serves what it served before.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from accelerate import PartialState

from index.files import write_json_atomic
from removal.trainer import Progress, TrainSpec, train

NICENESS = 10


def main(job_dir: Path) -> None:
    os.nice(NICENESS)
    spec = TrainSpec(**json.loads((job_dir / "spec.json").read_text()))

    def report(progress: Progress) -> None:
        write_json_atomic(job_dir / "progress.json", asdict(progress))
        print(json.dumps(asdict(progress)), flush=True)

    result = train(spec, report) | {"cpu_seconds": round(time.process_time(), 3)}
    if PartialState().is_main_process:  # with several processes, one writes
        write_json_atomic(job_dir / "result.json", result)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
