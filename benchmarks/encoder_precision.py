"""Do reduced precision or ``torch.compile`` pay off for the fixed per-image costs on this CPU?

Issue #12 asks for ``segment.dtype``/``segment.compile`` "the same for the image encoder and the
CLIP image tower where they pay off". This measures, in CPU time with one thread (the machine may
be shared), hiera-tiny's image encoder on one 1024-px image and ViT-B-32's image tower on a batch
of 16 crops (random weights, as ``index_throughput.py``):

* eager float32 (what the product runs),
* eager under ``torch.autocast("cpu", bfloat16)``,
* ``torch.compile`` float32 (first call = compilation, reported apart),

and whether the CPU multiplies bfloat16 natively (``regionsearch.models.device.native_bfloat16``). Figures go to
``benchmarks/results/encoder_precision.json``.

Run::

    python benchmarks/encoder_precision.py [--rounds 3] [--no-compile]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _results import save_results  # noqa: E402


def _cpu_time(fn, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        c0 = time.process_time()
        fn()
        out.append(time.process_time() - c0)
    return out


def _variants(name: str, model_fn, x, rounds: int, compile_too: bool) -> dict:
    import torch

    res: dict = {}
    with torch.inference_mode():
        model_fn(x)  # warm-up
        res["eager float32 (s)"] = _cpu_time(lambda: model_fn(x), rounds)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model_fn(x)
            res["eager bfloat16 autocast (s)"] = _cpu_time(lambda: model_fn(x), rounds)
    if compile_too:
        compiled = torch.compile(model_fn, dynamic=False)
        with torch.inference_mode():
            c0 = time.process_time()
            compiled(x)
            res["compile first call (CPU s)"] = time.process_time() - c0
            res["compiled float32 (s)"] = _cpu_time(lambda: compiled(x), rounds)
    best = {k: min(v) for k, v in res.items() if isinstance(v, list)}
    base = best["eager float32 (s)"]
    print(f"{name}: " + ", ".join(f"{k} best {v:.2f}" for k, v in best.items())
          + (f", compile {res['compile first call (CPU s)']:.1f} CPU s" if compile_too else ""))
    return {"cpu_s_by_round": res, "best_cpu_s": best, "speedup_vs_eager_float32": {k: base / v for k, v in best.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile (minutes of compilation)")
    ap.add_argument("--save", default="encoder_precision",
                    help="results name: benchmarks/results/NAME.json (e.g. one per kind of CPU)")
    args = ap.parse_args()

    import torch

    from index_throughput import _speed_models
    from regionsearch.models.device import native_bfloat16

    sam, clip, *_ = _speed_models(1)
    image = torch.randn(1, 3, 1024, 1024)
    crops = torch.randn(16, 3, 224, 224)
    figures = {"native_bf16": native_bfloat16("cpu"), "threads": 1, "clock": "process CPU time",
               "image encoder (hiera-tiny, 1024 px)": _variants("image encoder", sam.forward_image, image, args.rounds,
                                                                 not args.no_compile),
               "CLIP image tower (ViT-B-32, 16 crops)": _variants("CLIP image tower", clip.encode_image, crops,
                                                                  args.rounds, not args.no_compile)}
    print("results:", save_results(args.save, figures))


if __name__ == "__main__":
    main()
