"""Run every benchmark (``make bench``); results print as JSON lines and are saved
under ``artifacts/bench/results.json``."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_deconv  # noqa: E402
import bench_mining  # noqa: E402
import bench_occlusion  # noqa: E402
import bench_precision  # noqa: E402
import bench_train  # noqa: E402

from zfcore.artifacts import artifacts_dir


def main():
    argv = sys.argv[1:]
    scale = argv[argv.index("--scale") + 1] if "--scale" in argv[:-1] else "default"
    results = [bench_train.main(argv), bench_deconv.main([]), bench_mining.main(["--scale", scale]),
               bench_occlusion.main([]), bench_precision.main([])]
    out = artifacts_dir() / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"saved {out / 'results.json'}")


if __name__ == "__main__":
    main()
