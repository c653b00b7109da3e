"""Run every benchmark in its own process (so peak RSS is its own): `make bench` or `python -m bench [name...]`."""

import subprocess
import sys
from pathlib import Path

BENCHES = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))

if __name__ == "__main__":
    chosen = sys.argv[1:] or BENCHES
    failed = 0
    for name in chosen:
        print(f"== {name}", flush=True)
        failed |= subprocess.call([sys.executable, "-m", f"bench.{name}"])
    sys.exit(failed)
