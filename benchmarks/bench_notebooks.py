"""How long each notebook takes under nbval (the course must execute end to end in minutes)."""
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TITLE = "Chapter execution time under nbval (solutions/, the complete chapters)"
TARGET_S = 8 * 60


def nbval_seconds(path: Path) -> tuple[float, bool]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider", str(path)],
                            cwd=ROOT, capture_output=True, text=True)
    return time.perf_counter() - start, result.returncode == 0


def run() -> str:
    rows, total = ["| notebook | nbval time (s) | passed |", "|---|---:|---|"], 0.0
    for folder in ("solutions",):  # the learner copies run the same cells minus the exercise bodies
        for path in sorted((ROOT / folder).glob("*.ipynb")):
            seconds, ok = nbval_seconds(path)
            total += seconds
            rows.append(f"| {folder}/{path.name} | {seconds:.1f} | {'yes' if ok else 'NO'} |")
    verdict = "meets" if total <= TARGET_S else "MISSES"
    rows.append(f"| **total** | **{total:.1f}** | {verdict} the {TARGET_S // 60}-minute target |")
    return "\n".join(rows)
