"""How fast the `outbox` command starts (SPEC §4: `outbox --help` and other commands
in under 300 ms).

    .venv/bin/python bench/cli_startup.py [--runs 7]

Runs `outbox --version`, `outbox --help` and `outbox status ID` (on an empty file
that `outbox migrate` gave Outbox's tables, with one queued message) in fresh
processes, with the bytecode cache warm (as an installed package has it), and prints
the median wall and CPU time of each, and the modules that cost most at import
(`python -X importtime`). The figures are only comparable within one run on a shared
machine; CPU time moves less than wall time when other processes compete.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OUTBOX = [sys.executable, "-m", "outbox"]


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(args, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def heaviest_imports(args: list[str], env: dict[str, str], count: int = 8) -> list[str]:
    result = subprocess.run([sys.executable, "-X", "importtime", *args[1:]], env=env,
                            capture_output=True, text=True, check=True)
    rows = []
    for line in result.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit() and not parts[2].startswith("   "):
            rows.append((int(parts[1]), parts[2].strip()))
    return [f"{name} {micros / 1000:.0f} ms" for micros, name in sorted(rows)[-count:][::-1]]


def prepare(directory: Path, env: dict[str, str]) -> tuple[str, str]:
    config = directory / "outbox.toml"
    config.write_text('[database]\nurl = "sqlite:///./outbox.db"\n[logging]\nfile = "outbox.log"\n'
                      '[[relays]]\nname = "default"\nhost = "127.0.0.1"\nport = 2525\n'
                      'security = "none"\n')
    (directory / "outbox.db").touch()  # migrate gives an empty file the tables, creates none
    subprocess.run([*OUTBOX, "migrate", "--config", str(config)], env=env, check=True,
                   capture_output=True)
    sent = subprocess.run([*OUTBOX, "send", "--from", "a@example.test", "--to", "b@example.test",
                           "--subject", "bench", "--text", "hi", "--config", str(config)],
                          env=env, check=True, capture_output=True, text=True)
    return str(config), sent.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("OUTBOX_") and k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")  # a warm bytecode cache
        config, message = prepare(Path(tmp), env)
        commands = {"--version": [*OUTBOX, "--version"], "--help": [*OUTBOX, "--help"],
                    "status": [*OUTBOX, "status", message, "--config", config]}
        print(f"{'command':<10} {'wall median':>12} {'cpu median':>11}  heaviest imports")
        for name, args in commands.items():
            timed(args, env)  # warm the bytecode cache and the page cache
            samples = [timed(args, env) for _ in range(runs)]
            wall = statistics.median(s[0] for s in samples) * 1000
            cpu = statistics.median(s[1] for s in samples) * 1000
            print(f"{name:<10} {wall:>9.0f} ms {cpu:>8.0f} ms  "
                  f"{', '.join(heaviest_imports(args, env, 4))}")
        print(f"target: < 300 ms (SPEC §4); load average now {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
