"""`make bench`: run every benchmark in this folder, one process each, and print their tables."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def main() -> int:
    """Run `bench_*.py` (or those named on the command line) and report failures."""
    names = sys.argv[1:] or sorted(p.stem for p in HERE.glob("bench_*.py"))
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
