"""Run every benchmark (``make bench``); results print as JSON lines and are saved
under ``artifacts/bench/results.json``."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_train  # noqa: E402

from zfcore.presets import artifacts_dir  # noqa: E402


def main():
    results = [bench_train.main(sys.argv[1:])]
    out = artifacts_dir() / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"saved {out / 'results.json'}")


if __name__ == "__main__":
    main()
