"""Every config check of every task, one bad value at a time: the one-line ValueError names the flag.

Many of these values never get past argparse (its ``choices`` refuse an unknown name first); they
are reachable from Python (a task's ``Config()`` filled in by hand, ``config.json`` edited) and
must say the same thing there. docs/errors.md lists them.
"""

from __future__ import annotations

import pytest

from unrolled.tasks import registry

# (task, section, field, bad value, what the message says)
CASES = [
    ("classify", "model", "arch", "tree", "unknown --arch 'tree'"),
    ("classify", "model", "pool", "median", "unknown --pool 'median'"),
    ("classify", "model", "widths", [3, 0], "--widths must be positive integers"),
    ("classify", "model", "dropout", 1.0, "--dropout must be in [0, 1)"),
    ("classify", "data", "data", None, "--data FILE is required"),
    ("classify", "data", "tokens", "bytes", "unknown --tokens 'bytes'"),
    ("classify", "loop", "select", "f1", "unknown --select 'f1'"),
    ("forecast", "model", "strategy", "sideways", "unknown --strategy 'sideways'"),
    ("forecast", "model", "loss", "hinge", "unknown --loss 'hinge'"),
    ("forecast", "model", "dropout", -0.1, "--dropout must be in [0, 1)"),
    ("forecast", "data", "series", "moon", "unknown --series 'moon'"),
    ("forecast", "data", "fill", "guess", "unknown --fill 'guess'"),
    ("forecast", "data", "difference", -1, "--difference and --seasonal-difference must be >= 0"),
    ("forecast", "data", "noise", -1.0, "--noise must be >= 0"),
    ("forecast", "data", "column", "y", "--column, --covariates and --time-column apply to --csv"),
    ("forecast", "data", "csv", "x.csv", "give the series with --csv FILE --column NAME, or --series NAME"),
    ("forecast", "data", {"series": None, "csv": "x.csv"}, None, "--csv needs --column NAME"),
    ("lm", "model", "embedding_dim", -1, "--embedding-dim must be >= 0"),
    ("lm", "model", "dropout", 1.5, "--dropout must be in [0, 1)"),
    ("lm", "model", "weight_drop", 1.0, "--weight-drop must be in [0, 1)"),
    ("lm", "model", "word_dropout", -0.1, "--word-dropout must be in [0, 1)"),
    ("lm", "model", "ar", -1.0, "--ar is a penalty weight: it must be >= 0"),
    ("lm", "model", "tar", -0.5, "--tar is a penalty weight: it must be >= 0"),
    (
        "lm",
        "model",
        {"word_dropout": 0.1, "embedding_dim": 0},
        None,
        "--word-dropout drops rows of the embedding",
    ),
    ("lm", "model", {"cell": "mingru", "weight_drop": 0.2}, None, "--cell mingru has none"),
    ("lm", "model", "softmax", "sampled", "unknown --softmax 'sampled'"),
    (
        "lm",
        "model",
        {"softmax": "adaptive", "tie_weights": True},
        None,
        "--softmax adaptive has no one decoder",
    ),
    ("lm", "model", "cutoffs", [10, 20], "--cutoffs applies to --softmax adaptive"),
    ("classify", "model", "weight_drop", 1.0, "--weight-drop must be in [0, 1)"),
    ("classify", "model", "weight_drop", 0.5, "--weight-drop drops recurrent weights: it needs a recurrent"),
    ("translate", "model", "weight_drop", -0.2, "--weight-drop must be in [0, 1)"),
    ("lm", "data", "unit", "byte", "unknown --unit 'byte'"),
    ("lm", "data", "tokens", "wordpiece", "unknown --tokens 'wordpiece'"),
    ("tag", "model", "char_encoder", "lstm2", "unknown --char-encoder 'lstm2'"),
    ("tag", "model", "decoder", "hmm", "unknown --decoder 'hmm'"),
    ("tag", "model", "dropout", 1.0, "--dropout must be in [0, 1)"),
    ("tag", "data", "data", None, "--data FILE is required"),
    ("translate", "model", "attention", "sparse", "unknown --attention 'sparse'"),
    ("translate", "model", "dropout", 2.0, "--dropout must be in [0, 1)"),
    ("translate", "data", "tokens", "bytes", "unknown --tokens 'bytes'"),
    ("translate", "optim", "label_smoothing", 1.0, "--label-smoothing must be in [0, 1)"),
    ("lm", "optim", "clip", -1.0, "--clip must be >= 0"),
    ("lm", "optim", "average", "ema", "unknown --average 'ema'"),
    ("lm", "optim", "average_window", 0, "--average-window must be >= 1, got 0"),
    ("lm", "optim", "optimizer", "lion", "unknown --optimizer 'lion'"),
    ("lm", "optim", "precision", "fp8", "unknown --precision 'fp8'"),
    ("lm", "optim", "schedule", "linear", "unknown --lr-schedule 'linear'"),
    ("lm", "optim", "warmup_steps", -5, "--warmup-steps and --weight-decay must be >= 0"),
    ("lm", "loop", "on_nonfinite", "ignore", "unknown --on-nonfinite 'ignore'"),
]


BASE = {  # what a valid config of the task needs beside the defaults: its data
    "classify": {"data": "x.csv"},
    "tag": {"data": "x.txt"},
    "forecast": {"series": "sine"},
}


@pytest.mark.parametrize(("task", "section", "name", "value", "says"), CASES)
def test_a_bad_config_value_is_one_line_naming_the_flag(task, section, name, value, says) -> None:
    config = registry()[task].Config()
    for field, good in BASE.get(task, {}).items():
        setattr(config.data, field, good)
    config.validate()  # a valid config ...
    part = getattr(config, section)
    changes = name if isinstance(name, dict) else {name: value}
    for field, bad in changes.items():
        assert hasattr(part, field), f"{task}.{section} has no field {field}"
        setattr(part, field, bad)
    with pytest.raises(ValueError) as e:  # ... and one bad value is refused, saying which
        config.validate()
    message = str(e.value)
    assert says in message and "\n" not in message, message
