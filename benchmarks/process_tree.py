"""Running a benchmarked command while sampling the memory of its whole process tree
(the Python process and every ffmpeg it starts)."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class Sampled:
    """A finished command: wall seconds, peak memory of its tree, and what it printed.

    Attributes:
        peak_pss: Peak proportional set size (shared pages split among the processes
            mapping them), 0 unless asked for.
    """

    seconds: float
    peak_rss: int
    peak_pss: int
    returncode: int
    stdout: str
    stderr: str


def run_sampled(command: list[str], *, cwd: Path | None = None, pss: bool = False,
                every: float = 0.05) -> Sampled:
    """Runs `command`, sampling the resident memory of its process tree every `every`
    seconds (and its PSS too when `pss`, which costs more per sample)."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(proc.pid)
    peak_rss = peak_pss = 0
    while proc.poll() is None:
        try:
            rss = shared = 0
            for process in [root, *root.children(recursive=True)]:
                try:
                    rss += process.memory_info().rss
                    if pss:
                        shared += getattr(process.memory_full_info(), "pss", 0)
                except psutil.Error:
                    pass
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, shared)
        except psutil.Error:
            pass
        time.sleep(every)
    seconds = time.perf_counter() - started
    stdout, stderr = proc.communicate()
    return Sampled(seconds, peak_rss, peak_pss, proc.returncode, stdout, stderr)
