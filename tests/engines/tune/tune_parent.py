"""A stand-in for the app in the kill -9 test: starts a run with TuneProcess and prints every event it hears as a
JSON line, until it is killed.  python tests/engines/tune/tune_parent.py SPEC_JSON"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from engines.config.load import Config
from engines.tune.events import to_line
from engines.tune.process import TuneProcess
from engines.tune.types import TuneEvent, TuneOptions


def main(spec: dict[str, str]) -> int:
    config = Config(
        models_dir=Path(spec["models_dir"]),
        data_dir=Path(spec["data_dir"]),
        cache_dir=Path(spec["cache_dir"]),
        n_threads=1,
    )

    def show(event: TuneEvent) -> None:
        print(to_line(event), flush=True)

    options = TuneOptions.from_json(json.loads(spec["options"]))
    proc = TuneProcess.start(config, spec["base"], Path(spec["data"]), spec["name"], options, show)
    return proc.wait() or 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
