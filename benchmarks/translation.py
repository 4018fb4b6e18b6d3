"""English -> Spanish Bible verses: the unrolled translator with and without attention, and a copy baseline.

Needs Debian's SWORD modules and the ``pysword`` reader (``pip install -e '.[bench]'``)::

    apt-get install sword-text-kjv sword-text-sparv

What it measures
    Corpus BLEU and chrF (sacrebleu, defaults: 13a tokenisation, exponential smoothing) and the
    exact-match rate of ``unrolled train translate`` models (``--models``: word tokens, or
    sentencepiece subwords of K thousand pieces, joint or one model per side, each with an
    attention), each trained for the
    same wall-clock budget (``--minutes``) on the same verse pairs, and of a copy-the-source
    baseline (the English verse offered as its own Spanish translation: what a model gets for
    names, numbers and punctuation alone), all scored on the same test verses, greedy and with
    beam search (``--beam``).

The data
    The King James Version (module ``engKJV2006eb``, Debian's ``sword-text-kjv``) and the
    Reina-Valera 1909 (``spaRV1909eb``, ``sword-text-sparv``), both public domain, read at run
    time from /usr/share/sword with pysword; nothing is stored in the repository. Verses are
    paired by reference (book, chapter, verse); a pair with an empty side is skipped, as are the
    paragraph marks (``¶``). Verses are split *by book*: the test books (``TEST_BOOKS``, from
    both testaments and several genres) are never trained on, so the test measures translation
    of unseen text, not recall of a verse seen in training. The remaining books are written to
    ``train.tsv``; the translator holds out its own validation verses from them (``--val-frac``,
    by ``--seed``) to pick the best weights by BLEU.

The protocol
    ``python -m unrolled train translate --data train.tsv --test-data test.tsv --test-frac 0
    --max-len L --min-freq F --attention A --max-minutes M --out DIR --no-progress`` in a
    subprocess per model (word tokens, lower-cased, punctuation split off; training verses
    longer than L tokens dropped, which the run's config.json counts); then
    ``unrolled eval DIR --data test.tsv --json`` for greedy and beam scores of the best weights.
    The baseline is scored with the same tokenisation (``detokenize(tokenize(text))``). Word runs
    are scored on word tokens rejoined; subword runs output real text, scored against the raw
    (lower-cased) reference with sacrebleu's 13a tokenisation (``copy-source-raw`` is the
    baseline scored that way).
    Time-limited training depends on the machine's load: the load average is recorded.

Output
    A table on stdout and ``benchmarks/results/translation-<date>-cpu<threads>.json`` (or
    ``--json FILE``), written atomically. ``--smoke`` runs a few-second version on a few books.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from unrolled.data.pairs import detokenize, tokenizer  # noqa: E402
from unrolled.metrics import corpus_scores  # noqa: E402
from unrolled.training.checkpoint import atomic_write_json  # noqa: E402

SWORD = "/usr/share/sword"
ENGLISH, SPANISH = "engKJV2006eb", "spaRV1909eb"
# unseen in training: law, history, poetry, prophecy, gospel, letters, apocalypse
TEST_BOOKS = ("Ruth", "Esther", "Song of Solomon", "Jonah", "Mark", "Philippians", "James", "Jude")


def read_verses(module: str) -> dict[tuple[str, int, int], str]:
    """(book name, chapter, verse) -> the verse's plain text, for every verse of a SWORD Bible."""
    from pysword.modules import SwordModules

    modules = SwordModules(SWORD)
    found = modules.parse_modules()
    if module not in found:
        raise SystemExit(
            f"SWORD module {module} not found in {SWORD} (have: {', '.join(found) or 'none'}); "
            "install it: apt-get install sword-text-kjv sword-text-sparv"
        )
    bible = modules.get_bible_from_module(module)
    verses = {}
    for testament in bible.get_structure().get_books().values():
        for book in testament:
            texts = bible.get_iter(books=[book.name], clean=True)  # every verse of the book, in order
            for chapter, length in enumerate(book.chapter_lengths, start=1):
                for verse in range(1, length + 1):
                    text = " ".join(next(texts).replace("¶", " ").split())
                    if text:
                        verses[(book.name, chapter, verse)] = text
    return verses


def write_tsv(path: Path, pairs: list[tuple[str, str]]) -> None:
    path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")


def run(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"command failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return done.stdout


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=15.0, help="training budget per model [15]")
    p.add_argument(
        "--max-len", type=int, default=40, help="training verses longer than this are dropped [40]"
    )
    p.add_argument("--min-freq", type=int, default=3, help="rarer words become <unk> [3]")
    p.add_argument("--beam", type=int, default=5, help="beam size of the beam-search scores [5]")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument(
        "--models",
        default="word-bahdanau,word-none",
        help="NAME[,NAME...]: word-ATTENTION, or bpeK-ATTENTION / unigramK-ATTENTION (K thousand "
        "joint sentencepiece pieces, e.g. bpe8-bahdanau; bpe8sep-bahdanau: one model of K thousand "
        "per side) [word-bahdanau,word-none]",
    )
    p.add_argument(
        "--subword-max-len", type=int, default=64, help="--max-len of the subword models, in pieces [64]"
    )
    p.add_argument("--workdir", help="keep the data and runs here (default: a temporary folder)")
    p.add_argument("--json", help="result file [benchmarks/results/translation-<date>-cpu<threads>.json]")
    p.add_argument("--smoke", action="store_true", help="a few seconds on a few books, to test the script")
    args = p.parse_args()

    t0 = time.time()
    english, spanish = read_verses(ENGLISH), read_verses(SPANISH)
    refs = [r for r in english if r in spanish]  # in canonical order
    if args.smoke:
        keep = {"Ruth", "Jonah", "Jude", "Philemon", "Obadiah", "Titus"}
        refs = [r for r in refs if r[0] in keep]
    test = [(english[r], spanish[r]) for r in refs if r[0] in TEST_BOOKS]
    train = [(english[r], spanish[r]) for r in refs if r[0] not in TEST_BOOKS]
    print(f"{len(refs):,} verse pairs: {len(train):,} in training books, {len(test):,} in test books "
          f"({', '.join(TEST_BOOKS)}); read in {time.time() - t0:.0f} s", file=sys.stderr)  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        write_tsv(work / "train.tsv", train)
        write_tsv(work / "test.tsv", test)
        tok = tokenizer("word")
        refs_text = [detokenize(tok(t), "word") for _, t in test]
        copy = corpus_scores([detokenize(tok(s), "word") for s, _ in test], refs_text)
        # scored as subword runs are: the raw (lower-cased) text against the raw reference, 13a
        raw = corpus_scores(
            [" ".join(s.lower().split()) for s, _ in test], [" ".join(t.lower().split()) for _, t in test]
        )
        results: dict[str, dict] = {"copy-source": {"greedy": copy}, "copy-source-raw": {"greedy": raw}}
        load_before = os.getloadavg()
        minutes = 0.1 if args.smoke else args.minutes
        for name in args.models.split(","):
            tokens, attention = name.split("-")
            out = work / f"run-{name}"
            cmd = [sys.executable, "-m", "unrolled", "train", "translate", "--data", str(work / "train.tsv")]
            cmd += ["--test-data", str(work / "test.tsv"), "--attention", attention, "--seed", str(args.seed)]
            if tokens == "word":
                cmd += ["--max-len", str(args.max_len), "--min-freq", str(args.min_freq)]
            else:  # bpe8 -> --tokens bpe --vocab-size 8000 (one joint model); bpe8sep: one per side
                separate = tokens.endswith("sep")
                tokens = tokens.removesuffix("sep")
                kind, thousands = tokens.rstrip("0123456789"), tokens[len(tokens.rstrip("0123456789")) :]
                cmd += ["--tokens", kind, "--vocab-size", str(int(thousands) * 1000)]
                cmd += ["--separate-subwords"] if separate else []
                cmd += ["--max-len", str(args.subword_max_len)]
            cmd += ["--max-minutes", str(minutes), "--eval-every", "50" if args.smoke else "500"]
            cmd += ["--out", str(out), "--no-progress"]
            started = time.time()
            run(cmd)
            wall = time.time() - started
            config = json.loads((out / "config.json").read_text())
            records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
            last = [r for r in records if "elapsed" in r][-1]
            entry: dict = {
                "train_s": last["elapsed"],
                "wall_s": wall,
                "steps": last["step"],
                "info": config["info"],
            }
            for decoding, beam in (("greedy", 1), (f"beam{args.beam}", args.beam)):
                scored = json.loads(
                    run([sys.executable, "-m", "unrolled", "eval", str(out), "--data", str(work / "test.tsv"),
                         "--beam", str(beam), "--length-penalty", "0.6" if beam > 1 else "0", "--json"])
                )  # fmt: skip
                entry[decoding] = {
                    k: scored[k] for k in ("bleu", "chrf", "exact_match", "token_accuracy", "loss")
                }
            results[name] = entry
            print(f"  {name}: {entry['steps']} steps in {entry['train_s']:.0f} s", file=sys.stderr)

    print(f"\n{'model':<22} {'decoding':<8} {'BLEU':>6} {'chrF':>6} {'exact':>6}")
    for name, entry in results.items():
        for decoding in [k for k in entry if k == "greedy" or k.startswith("beam")]:
            r = entry[decoding]
            print(f"{name:<22} {decoding:<8} {r['bleu']:6.2f} {r['chrf']:6.2f} {r['exact_match']:6.3f}")
    threads = torch.get_num_threads()
    record = {
        "benchmark": "translation",
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "threads": threads,
        "data": {
            "english": ENGLISH,
            "spanish": SPANISH,
            "test_books": TEST_BOOKS,
            "train_pairs": len(train),
            "test_pairs": len(test),
        },  # fmt: skip
        "args": vars(args),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "results": results,
    }
    if not args.smoke or args.json:
        path = Path(args.json or ROOT / f"benchmarks/results/translation-{record['date']}-cpu{threads}.json")
        atomic_write_json(path, record)
        print(f"\nwritten: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
