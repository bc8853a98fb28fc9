"""`make bench`: run every benchmark in this folder, one process each, and print their tables."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
#: Benchmarks that take many minutes: run only when named or with GRADEKIT_BENCH_SLOW=1.
SLOW = frozenset({"bench_smollm2_learning"})


def main() -> int:
    """Run `bench_*.py` (or those named on the command line) and report failures."""
    names = sys.argv[1:] or sorted(p.stem for p in HERE.glob("bench_*.py"))
    if not sys.argv[1:] and os.environ.get("GRADEKIT_BENCH_SLOW") != "1":
        for name in sorted(SLOW & set(names)):
            print(f"\n## {name}\n\nskipped: slow; run it with GRADEKIT_BENCH_SLOW=1 (or name it)", flush=True)
        names = [n for n in names if n not in SLOW]
    failed = []
    for name in names:
        print(f"\n## {name}\n", flush=True)
        start = time.perf_counter()
        rc = subprocess.run([sys.executable, str(HERE / f"{name}.py")], cwd=HERE).returncode
        print(f"\n({name}: {time.perf_counter() - start:.0f} s)", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
