"""The word LM's defaults that follow the data (:func:`unrolled.tasks.lm.data_defaults`), what a
run directory made before a setting existed means by it, and ``--precision auto``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from unrolled.cli import main
from unrolled.tasks import lm
from unrolled.training import device as device_mod
from unrolled.training.device import autocast_dtype, fast_bf16

TINY = ["--max-steps", "2", "--eval-every", "2", "--batch-size", "4", "--seq-len", "8", "--no-progress"]


def _config(out) -> dict:
    return json.loads((out / "config.json").read_text())


# ---- the rule ------------------------------------------------------------------------------
def test_the_rule_regularises_less_as_the_text_grows_and_turns_adaptive_on_its_thresholds() -> None:
    rule, words = lm.data_defaults, lm.ADAPTIVE_VOCABULARY - 1
    small, large = lm.SMALL_TEXT_REGULARISERS, lm.LARGE_TEXT_REGULARISERS
    for tokens in (1, lm.SMALL_TEXT // 10, lm.SMALL_TEXT):
        assert rule(lm.DataSize(tokens, words)).items() >= small.items()
    for tokens in (lm.LARGE_TEXT, lm.LARGE_TEXT * 10):
        assert rule(lm.DataSize(tokens, words)).items() >= large.items()
    # between the two: linear in the logarithm of the tokens, falling
    middle = rule(lm.DataSize(round(math.sqrt(lm.SMALL_TEXT * lm.LARGE_TEXT)), words))
    steps = [rule(lm.DataSize(t, words)) for t in range(lm.SMALL_TEXT, lm.LARGE_TEXT + 1, 50_000)]
    for name in small:
        assert small[name] > large[name]  # a small text is regularised harder
        assert middle[name] == pytest.approx((small[name] + large[name]) / 2, abs=0.006)
        values = [step[name] for step in steps]
        assert values == sorted(values, reverse=True) and values[0] > values[1] and values[-2] > values[-1]
    assert rule(lm.DataSize(lm.ADAPTIVE_TEXT - 1, words))["softmax"] == "full"
    assert rule(lm.DataSize(lm.ADAPTIVE_TEXT, words))["softmax"] == "adaptive"
    assert rule(lm.DataSize(lm.ADAPTIVE_TEXT - 1, lm.ADAPTIVE_VOCABULARY))["softmax"] == "adaptive"
    every = {name for name, value in lm.UNIT_DEFAULTS["word"].items() if value is lm.FROM_DATA}
    assert set(middle) == every  # the rule sets exactly the settings marked as following the data


def test_until_the_data_is_read_the_data_settings_stay_unset_and_the_rest_is_filled() -> None:
    cfg = lm.LMConfig()
    cfg.data.unit = "word"
    cfg.validate()
    from_data = [name for name, value in lm.UNIT_DEFAULTS["word"].items() if value is lm.FROM_DATA]
    assert all(getattr(cfg.model, name) is None for name in from_data)
    assert cfg.model.tie_weights is None  # it follows the softmax
    assert cfg.model.locked_dropout is True and cfg.optim.average == "nt" and cfg.optim.precision == "auto"
    cfg.resolve(lm.DataSize(10**6, 20_000))
    rule = lm.data_defaults(lm.DataSize(10**6, 20_000))
    assert all(getattr(cfg.model, name) == rule[name] for name in from_data)
    assert cfg.model.embedding_dim == cfg.model.hidden
    assert cfg.model.softmax == "adaptive" and cfg.model.tie_weights is False  # nothing to tie


def test_char_and_subword_defaults_do_not_follow_the_data() -> None:
    for unit in ("char", "subword"):
        cfg = lm.LMConfig()
        cfg.data.unit = unit
        m, o = cfg.resolve(lm.DataSize(10**7, 10**5)).model, cfg.optim
        expected = {"char": (512, 0.25, False), "subword": (256, 0.3, True)}[unit]
        assert (m.hidden, m.dropout, m.tie_weights) == expected and m.softmax == "full"
        assert (m.weight_drop, m.locked_dropout, m.word_dropout, m.ar, m.tar) == (0.0, False, 0.0, 0.0, 0.0)
        assert (o.average, o.precision) == ("off", "fp32")


def _train(text, out, flags: str) -> int:
    return main(
        ["train", "lm", "--unit", "word", "--text", str(text), "--out", str(out), *flags.split(), *TINY]
    )


@pytest.mark.parametrize("words, softmax", [(40, "full"), (lm.ADAPTIVE_VOCABULARY + 10, "adaptive")])
def test_a_run_takes_the_rule_of_its_text(tmp_path, words, softmax) -> None:
    text = tmp_path / "t.txt"
    text.write_text("".join(f"w{i % words} w{(i * 7) % words} .\n" for i in range(4 * words)))
    out = tmp_path / "run"
    assert _train(text, out, "--min-count 1 --hidden 8 --sample-length 0") == 0
    saved = _config(out)
    model = saved["model"]
    rule = lm.data_defaults(lm.DataSize(saved["info"]["tokens"] * 8 // 10, saved["info"]["vocab_size"]))
    assert model["softmax"] == rule["softmax"] == softmax
    assert model["tie_weights"] is (softmax == "full")
    assert model["hidden"] == 8  # given: kept
    for name in rule:
        assert model[name] == rule[name]


def test_a_flag_given_beats_the_rule(tmp_path, tiny_text_file) -> None:
    out = tmp_path / "run"
    flags = "--hidden 8 --dropout 0.05 --weight-drop 0 --softmax adaptive --no-locked-dropout --average off"
    assert _train(tiny_text_file, out, f"{flags} --precision fp32 --min-count 1 --sample-length 0") == 0
    model, optim = _config(out)["model"], _config(out)["optim"]
    given = (model["dropout"], model["weight_drop"], model["softmax"], model["locked_dropout"])
    assert given == (0.05, 0.0, "adaptive", False)
    assert (optim["average"], optim["precision"]) == ("off", "fp32")


def test_an_embedding_that_cannot_be_tied_to_the_width_the_data_gives_is_refused_before_writing(
    tmp_path, tiny_text_file, capsys
) -> None:
    out = tmp_path / "runs" / "run"
    assert _train(tiny_text_file, out, "--embedding-dim 7 --min-count 1") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--embedding-dim equal to --hidden: got 7 and" in err[0], err
    assert not (tmp_path / "runs").exists()


def test_a_word_model_built_without_its_data_names_what_it_lacks() -> None:
    with pytest.raises(ValueError, match="default dropout, weight_drop, softmax follow the training text"):
        lm.build_model(lm.ModelConfig(hidden=8), 30, "word")
    given = lm.ModelConfig(hidden=8, dropout=0.1, weight_drop=0.0, softmax="full")
    assert lm.build_model(given, 30, "word").decoder.weight.shape == (30, 8)


# ---- run directories made before the settings ---------------------------------------------
def test_a_word_run_saved_before_the_newer_settings_keeps_their_old_meaning() -> None:
    cfg = lm.LMConfig()
    cfg.data.unit = "word"
    cfg.resolve(lm.DataSize(100, 50))
    saved = cfg.to_json()
    for section, names in lm.LEGACY.items():
        for name in names:
            del saved[section][name]
    old = lm.LMConfig.from_json(saved)
    for section, values in lm.LEGACY.items():
        for name, value in values.items():
            assert getattr(getattr(old, section), name) == value
    assert old.model.hidden == cfg.model.hidden and old.model.tie_weights is True


# ---- --precision auto -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "flags, expected",
    [({"amx_bf16", "avx512f"}, True), ({"avx512_bf16"}, True), ({"avx2", "avx512f"}, False)],
)
def test_auto_precision_is_bf16_only_where_the_cpu_multiplies_bf16(monkeypatch, flags, expected) -> None:
    monkeypatch.setattr(device_mod, "_cpu_flags", lambda: frozenset(flags))
    cpu = torch.device("cpu")
    assert fast_bf16(cpu) is expected
    assert autocast_dtype("auto", cpu) == (torch.bfloat16 if expected else None)
    assert autocast_dtype("fp32", cpu) is None and autocast_dtype("bf16", cpu) == torch.bfloat16


def test_the_cpu_flags_are_read_from_proc_cpuinfo_or_are_none() -> None:
    flags = device_mod._cpu_flags()
    assert isinstance(flags, frozenset)
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        assert flags == frozenset()
    else:
        line = next((x for x in text.splitlines() if x.startswith("flags")), "")
        assert flags == frozenset(line.partition(":")[2].split())
