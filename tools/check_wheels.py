"""Which packages of a lock install from a wheel on 64-bit Raspberry Pi OS (or another target).

    .venv/bin/python tools/check_wheels.py                  # requirements-runtime.lock, Bookworm
    .venv/bin/python tools/check_wheels.py --python-version 3.13 --glibc 2.41   # Trixie

For each pinned package, asks PyPI (`pip download --only-binary=:all: --no-deps`) for a wheel
that runs on the target: CPython of `--python-version` on Linux aarch64 with glibc up to
`--glibc` (64-bit Raspberry Pi OS Bookworm: Python 3.11, glibc 2.36). Prints one line per
package — pure Python, a binary wheel for the target, or none (pip would build the source
distribution there, which needs a compiler and the library's headers) — and a summary as a
Markdown table with `--markdown`. Exit status 0 when every package has a wheel, 1 otherwise.
Needs network access to PyPI, so it is no part of the test suite: run it when the lock changes.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", re.M)


@dataclass(frozen=True)
class Finding:
    name: str
    version: str
    kind: str  # "pure Python" | "aarch64 wheel" | "no wheel"
    file: str  # the wheel pip chose, or pip's last line of complaint

    @property
    def ok(self) -> bool:
        return self.kind != "no wheel"


def pins(lock: Path) -> list[tuple[str, str]]:
    return PIN.findall(lock.read_text(encoding="utf-8"))


def platforms(arch: str, glibc: str) -> list[str]:
    """manylinux2014 and every manylinux_2_N from 2.17 up to the target's glibc."""
    major, minor = (int(part) for part in glibc.split("."))
    return [f"manylinux2014_{arch}"] + [
        f"manylinux_{major}_{n}_{arch}" for n in range(17, minor + 1)
    ]


def check(name: str, version: str, args: argparse.Namespace, folder: Path) -> Finding:
    target = folder / name
    abi = f"cp{args.python_version.replace('.', '')}"
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"]
    command += ["--no-deps", "--only-binary=:all:", "--dest", str(target)]
    command += [f"--platform={p}" for p in platforms(args.arch, args.glibc)]
    command += ["--implementation", "cp", "--python-version", args.python_version]
    command += [f"--abi={a}" for a in (abi, "abi3", "none")]
    command += [f"{name}=={version}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    wheels = sorted(target.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        complaint = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
        return Finding(name, version, "no wheel", complaint)
    wheel = wheels[0].name
    kind = "pure Python" if wheel.endswith("-none-any.whl") else f"{args.arch} wheel"
    return Finding(name, version, kind, wheel)


def markdown(findings: Sequence[Finding]) -> str:
    lines = ["| package | version | on the target | wheel |", "|---|---|---|---|"]
    for f in findings:
        lines.append(f"| {f.name} | {f.version} | {f.kind} | `{f.file}` |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--lock", type=Path, default=ROOT / "requirements-runtime.lock", help="the pinned set"
    )
    parser.add_argument("--python-version", default="3.11", help="the target's Python (3.11)")
    parser.add_argument("--glibc", default="2.36", help="the target's glibc (Bookworm: 2.36)")
    parser.add_argument("--arch", default="aarch64", help="the target's machine (aarch64)")
    parser.add_argument("--jobs", type=int, default=8, help="downloads side by side")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per package")
    parser.add_argument("--markdown", action="store_true", help="a Markdown table")
    args = parser.parse_args(argv)

    wanted = pins(args.lock)
    with (
        tempfile.TemporaryDirectory(prefix="check-wheels-") as tmp,
        ThreadPoolExecutor(args.jobs) as pool,
    ):
        findings = list(pool.map(lambda pin: check(pin[0], pin[1], args, Path(tmp)), wanted))

    if args.markdown:
        print(markdown(findings))
    else:
        width = max(len(f"{f.name}=={f.version}") for f in findings)
        for f in findings:
            print(f"{f.name + '==' + f.version:<{width}}  {f.kind:<13}  {f.file}")
    counts = {
        kind: sum(f.kind == kind for f in findings) for kind in sorted({f.kind for f in findings})
    }
    target = f"CPython {args.python_version}, linux {args.arch}, glibc {args.glibc}"
    summary = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    print(f"\n{args.lock.name} on {target}: {len(findings)} packages: {summary}")
    missing = [f for f in findings if not f.ok]
    for f in missing:
        print(f"  no wheel: {f.name}=={f.version} ({f.file})", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
