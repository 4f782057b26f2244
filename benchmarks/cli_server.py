"""Wall time of one CLI search as a user runs it (a fresh ``regionsearch search`` process), on a
local data dir vs through a running server (``--server``), on a tiny-model data dir.

Setup: ``--scenes`` held-out shapes scenes indexed with the tiny preset into ``--data-dir``
(reused when it exists); ``regionsearch serve`` on it in a subprocess, waited for until
``/readyz`` says ready; then, alternating, ``--runs`` searches each way (distinct queries from
the 30 shapes classes, ``-k 10 --json``). Each figure is the median over the runs of the
subprocess's wall time and of its CPU time (user + system, children included: the work the CLI
process itself did, which load from other processes does not inflate). Both ways must give the
same region ids (the script exits 1 otherwise).

Run::

    python benchmarks/cli_server.py                 # 5 runs each way
    python benchmarks/cli_server.py --runs 9

Figures go to ``benchmarks/results/cli_server.json``. With the tiny models loading is cheap;
with the real default models the local command also loads SAM 2.1 and CLIP (6-13 s measured in
issue #17), which ``--server`` never does.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _results import save_results  # noqa: E402


def cli() -> list[str]:
    exe = shutil.which("regionsearch", path=str(Path(sys.executable).parent)) or shutil.which("regionsearch")
    return [exe] if exe else [sys.executable, "-c", "from regionsearch.cli import main; main()"]


def build(data: Path, scenes: int) -> None:
    from PIL import Image

    from regionsearch.config import load_config
    from regionsearch.engine import Engine
    from regionsearch.testing.heldout import held_out_scenes

    if (data / "manifest.json").exists():
        return
    images = data.parent / "images"
    images.mkdir(parents=True, exist_ok=True)
    for i, scene in enumerate(held_out_scenes()[:scenes]):
        Image.fromarray(scene.image).save(images / f"scene{i}.png")
    with Engine(load_config("tiny"), data) as eng:
        eng.index([str(images)], progress=False)


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float, dict]:
    """Wall and CPU seconds of one CLI process, and its JSON output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cli() + args, capture_output=True, text=True, env=env, timeout=600)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {proc.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, json.loads(proc.stdout)


def serve(data: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    import httpx

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen(cli() + ["serve", "--data-dir", str(data), "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise SystemExit("the server exited before it was ready")
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not get ready in 300 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="/tmp/regionsearch-bench-cli/data")
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from regionsearch.testing.shapes import CLASSES

    data = Path(args.data_dir)
    build(data, args.scenes)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("REGIONSEARCH_SERVER", None)
    server, url = serve(data, env)
    times: dict[str, list[tuple[float, float]]] = {"local": [], "server": []}
    same = True
    try:
        for i in range(args.runs):
            query = CLASSES[i % len(CLASSES)]
            base = ["search", query, "-k", "10", "--json"]
            w1, c1, local = timed(base + ["--data-dir", str(data)], env)
            w2, c2, remote = timed(base + ["--server", url], env)
            times["local"].append((w1, c1))
            times["server"].append((w2, c2))
            same &= [h["region_id"] for h in local["hits"]] == [h["region_id"] for h in remote["hits"]]
            print(f"{query!r}: local {w1:.2f} s wall / {c1:.2f} s CPU, --server {w2:.2f} s wall / {c2:.2f} s CPU")
    finally:
        server.terminate()
        server.wait(timeout=60)
    figures = {"runs": args.runs, "scenes": args.scenes, "config": "tiny", "same_hits": bool(same)}
    for way, ts in times.items():
        figures[f"{way}_wall_s_median"] = round(statistics.median(t[0] for t in ts), 3)
        figures[f"{way}_cpu_s_median"] = round(statistics.median(t[1] for t in ts), 3)
    figures["speedup_wall"] = round(figures["local_wall_s_median"] / figures["server_wall_s_median"], 2)
    path = save_results("cli_server", figures)
    print(json.dumps(figures, indent=2))
    print(f"wrote {path}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
