"""Disk size of a user install (``make install-user``) vs the full developer install (``make install``).

Measures the bytes on disk (``du``-style, allocated blocks) of each virtual environment, the
largest installed packages of each and the packages only the developer install has; prints the
sizes and their ratio and saves them with ``_results.save_results`` as
``benchmarks/results/install_size.json``. Build the environments first, e.g.::

    make install-user USER_VENV=/tmp/user-venv && make install
    python benchmarks/install_size.py --user /tmp/user-venv --dev .venv
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import save_results  # noqa: E402


def disk_bytes(path: Path) -> int:
    total, seen = 0, set()
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def packages(venv: Path) -> dict[str, int]:
    site = next(venv.glob("lib/python3*/site-packages"))
    return {p.name: disk_bytes(p) if p.is_dir() else p.stat().st_size for p in site.iterdir()
            if not p.name.endswith((".dist-info", ".pth")) and p.name != "__pycache__"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--user", type=Path, required=True, help="the make install-user venv")
    ap.add_argument("--dev", type=Path, required=True, help="the make install venv")
    args = ap.parse_args()
    mib = lambda b: round(b / 2**20)  # noqa: E731
    user, dev = disk_bytes(args.user), disk_bytes(args.dev)
    pu, pd = packages(args.user), packages(args.dev)
    cuda = sum(v for k, v in pu.items() if k in ("nvidia", "triton", "cuda"))
    figures = {"user_install_mib": mib(user), "dev_install_mib": mib(dev), "user_vs_dev": round(user / dev, 3),
               "user_largest_mib": {k: mib(v) for k, v in sorted(pu.items(), key=lambda kv: -kv[1])[:8]},
               "dev_only_largest_mib": {k: mib(pd[k]) for k in sorted(set(pd) - set(pu), key=lambda k: -pd[k])[:12]},
               "user_cuda_runtime_mib": mib(cuda)}
    print(f"user install {figures['user_install_mib']} MiB, dev install {figures['dev_install_mib']} MiB "
          f"(user/dev {figures['user_vs_dev']}); of the user install, torch's CUDA runtime (nvidia, triton) "
          f"is {figures['user_cuda_runtime_mib']} MiB")
    print("only in the dev install:", figures["dev_only_largest_mib"])
    print("saved", save_results("install_size", figures))


if __name__ == "__main__":
    main()
