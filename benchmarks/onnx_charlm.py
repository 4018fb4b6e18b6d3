"""Generation speed of the char-LM's exported step graph in onnxruntime against PyTorch eager, at batch 1.

Both run the same model one character per call, the state fed back, greedy (argmax), as a
generation loop outside Python would (docs/python_api.md): onnxruntime on the ONNX file that
``unrolled export`` writes, and PyTorch on the run's model under ``torch.inference_mode()`` with
the engine ``impl="auto"`` picks for inference (what ``unrolled sample`` runs). The rounds of the
two are interleaved in one process; chars/s = characters / median round time. Without ``--run``
the model is the char-LM's default architecture (2-layer GRU of 256, embedding 64) with random
weights over a 65-character vocabulary: speed does not depend on training.

    python benchmarks/onnx_charlm.py --json benchmarks/results/onnx-charlm.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import unrolled
from unrolled.export import write
from unrolled.tasks.lm import ModelConfig, build_model, step_graph


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", help="a char-LM run (default: the default architecture, random weights)")
    p.add_argument("--cell", default="gru", help="cell of the default architecture [gru]")
    p.add_argument("--chars", type=int, default=400, help="characters per round [400]")
    p.add_argument("--rounds", type=int, default=7, help="timed rounds per engine, interleaved [7]")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads of both [their own defaults]")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_file = Path(tmp) / "lm.onnx"
        if args.run:
            lm = unrolled.load(args.run)
            model, what = lm.model, f"run {args.run}"
            lm.export(onnx_file)
        else:
            model = build_model(ModelConfig(cell=args.cell), 65, "char").eval()
            what = f"default char-LM architecture ({args.cell}), random weights, V=65"
            write([step_graph(model)], onnx_file)
        options = ort.SessionOptions()
        if args.threads:
            options.intra_op_num_threads = args.threads
        session = ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()][1:]
    shapes = [[1 if isinstance(d, str) else d for d in i.shape] for i in session.get_inputs()][1:]

    def run_onnx() -> list[int]:
        state = {n: np.zeros(s, np.float32) for n, s in zip(names, shapes, strict=True)}
        token, out = np.zeros((1, 1), np.int64), []
        for _ in range(args.chars):
            logits, *new = session.run(None, {"tokens": token, **state})
            state = dict(zip(names, new, strict=True))
            token = np.array([[int(logits[0, -1].argmax())]], np.int64)
            out.append(int(token[0, 0]))
        return out

    @torch.inference_mode()
    def run_torch() -> list[int]:
        token, state, out = torch.zeros(1, 1, dtype=torch.long), None, []
        for _ in range(args.chars):
            logits, state = model(token, state)
            token = logits[:, -1].argmax(-1, keepdim=True)
            out.append(int(token[0, 0]))
        return out

    same = run_onnx() == run_torch()  # warm-up, and the same greedy text
    times: dict[str, list[float]] = {"onnxruntime": [], "pytorch": []}
    for _ in range(args.rounds):
        for name, fn in (("onnxruntime", run_onnx), ("pytorch", run_torch)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    rates = {k: args.chars / statistics.median(v) for k, v in times.items()}
    result = {
        "benchmark": "char-LM generation at batch 1, one character per call, greedy",
        "model": what,
        "engine_pytorch": model.rnn.engine_for("cpu", training=False),
        "chars_per_round": args.chars,
        "rounds": args.rounds,
        "chars_per_s": {k: round(v, 1) for k, v in rates.items()},
        "onnxruntime_over_pytorch": round(rates["onnxruntime"] / rates["pytorch"], 3),
        "same_greedy_text": same,
        "seconds_per_round": {k: [round(t, 4) for t in v] for k, v in times.items()},
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__},
        "machine": {"cpu_count": torch.get_num_threads(), "platform": platform.platform()},
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
