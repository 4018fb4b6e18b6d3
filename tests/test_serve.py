"""unrolled serve: the JSON API against unrolled.load on tiny runs of every task, bad input, path
escapes, the model cache, the command's own errors, and the page in headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import doc_function, task_data

pytest.importorskip("fastapi", reason="unrolled serve needs the [serve] extra (in the [test] extra)")
from fastapi.testclient import TestClient  # noqa: E402

import unrolled  # noqa: E402
from unrolled.analysis import neurons  # noqa: E402
from unrolled.cli import main  # noqa: E402
from unrolled.serve import create_app  # noqa: E402
from unrolled.serve.app import Limits  # noqa: E402
from unrolled.serve.runs import status  # noqa: E402
from unrolled.training import checkpoint as ckpt  # noqa: E402

TASKS = ["charlm", "word-lm", "classify", "translate", "tag", "forecast"]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A folder of tiny trained runs, one per task (charlm nested one level down); or the runs in
    UNROLLED_SERVE_RUNS, laid out the same way (docs/figures/make_serve.py trains longer ones)."""
    if os.environ.get("UNROLLED_SERVE_RUNS"):
        return Path(os.environ["UNROLLED_SERVE_RUNS"])
    base = tmp_path_factory.mktemp("serve")
    data = base / "data"
    data.mkdir()
    argv = task_data(data)
    argv["charlm"] = ["lm", "--text", str(data / "text.txt"), "--hidden", "16", "--batch-size", "4"]
    argv["charlm"] += ["--seq-len", "16", "--sample-length", "0"]
    runs = base / "runs"
    for task in TASKS:
        out = runs / ("lm" if task == "charlm" else "") / task
        assert main(["train", *argv[task], "--out", str(out), "--max-steps", "3", "--no-progress"]) == 0
    return runs


@pytest.fixture(scope="module")
def client(root) -> TestClient:
    return TestClient(create_app(root))


def _id(task: str) -> str:
    return "lm/charlm" if task == "charlm" else task


# ---- the runs --------------------------------------------------------------------------------
def test_the_runs_list_has_every_run_with_its_task_step_best_and_status(client, root) -> None:
    runs = {r["id"]: r for r in client.get("/api/runs").json()["runs"]}
    assert sorted(runs) == sorted(_id(t) for t in TASKS)
    for task in TASKS:
        r = runs[_id(task)]
        state = ckpt.trainer_state(root / _id(task))
        assert r["step"] == state["step"] == 3 and r["best_val"] == state["best_val"], r
        assert r["status"] == "finished" and r["config"]["task"] == r["task"]
        assert r["metric"].startswith("val_")
    assert runs["lm/charlm"]["verbs"] == ["sample", "stream", "score", "neurons"]
    assert runs["word-lm"]["verbs"] == ["sample", "stream", "score"]  # the neuron view reads characters
    assert runs["classify"]["verbs"] == ["predict"]


def test_a_run_that_appears_while_the_server_is_up_is_listed(root, tmp_path) -> None:
    shutil.copytree(root, tmp_path / "runs")
    c = TestClient(create_app(tmp_path / "runs"))
    assert "later/tag" not in {r["id"] for r in c.get("/api/runs").json()["runs"]}
    shutil.copytree(root / "tag", tmp_path / "runs" / "later" / "tag")
    assert "later/tag" in {r["id"] for r in c.get("/api/runs").json()["runs"]}


def test_metrics_are_the_records_of_metrics_jsonl(client, root) -> None:
    records = [json.loads(line) for line in (root / "tag" / ckpt.METRICS).read_text().splitlines()]
    assert client.get("/api/runs/tag/metrics").json()["records"] == records


def test_status_says_training_and_diverged(root, tmp_path) -> None:
    run = tmp_path / "run"
    shutil.copytree(root / "tag", run)
    assert status(run) == "finished"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "unrolled"])
    try:
        (run / ".lock").write_text(f"{sleeper.pid}\n")
        assert status(run) == "training"
    finally:
        sleeper.kill()
        sleeper.wait()
    assert status(run) == "finished"  # the process is gone: the lock file's pid is stale
    with open(run / ckpt.METRICS, "a") as f:
        f.write(json.dumps({"kind": "diverged", "step": 9, "problem": "the loss is nan"}) + "\n")
    assert status(run) == "diverged"


# ---- every verb answers as unrolled.load does ------------------------------------------------
def test_language_models_sample_stream_score_and_neurons_as_unrolled_load(client, root) -> None:
    for task in ("charlm", "word-lm"):
        p, path = unrolled.load(root / _id(task)), f"/api/runs/{_id(task)}"
        prime = "the river"
        body = {"prime": prime, "length": 25, "temperature": 0.9, "seed": 7}
        expected = p.sample(prime, 25, 0.9, None, 7)
        assert client.post(f"{path}/sample", json=body).json()["text"] == expected
        streamed = client.post(f"{path}/stream", json=body)
        assert streamed.status_code == 200 and streamed.text == expected
        assert streamed.headers["content-type"].startswith("text/plain")
        scored = client.post(f"{path}/score", json={"text": "the old mill stood"}).json()
        assert scored == {"id": _id(task), **p.score("the old mill stood")}
    p, text = unrolled.load(root / "lm" / "charlm"), "the river runs where old mill stood"
    n = client.post("/api/runs/lm/charlm/neurons", json={"text": text}).json()
    signals = {s.name: s for s in neurons.activations(p.model, p.vocab.encode(text))}
    assert [s["name"] for s in n["signals"]] == list(signals)
    assert np.allclose(n["values"], signals[n["signal"]].values[:, n["unit"]].numpy(), atol=1e-6)
    chosen = client.post("/api/runs/lm/charlm/neurons", json={"text": text, "signal": "layer 0 h", "unit": 3})
    assert np.allclose(chosen.json()["values"], signals["layer 0 h"].values[:, 3].numpy(), atol=1e-6)


def test_classify_translate_tag_and_forecast_as_unrolled_load(client, root) -> None:
    texts = ["old mill calmish", "the stone stormish rain"]
    p = unrolled.load(root / "classify")
    got = client.post("/api/runs/classify/predict", json={"texts": texts}).json()["predictions"]
    assert [(g["label"], g["probability"]) for g in got] == p.predict(texts)
    assert np.allclose([list(g["probabilities"].values()) for g in got], p.predict_proba(texts))

    p = unrolled.load(root / "translate")
    got = client.post("/api/runs/translate/translate", json={"text": "twenty one", "beam": 2}).json()
    (t,) = p.translate(["twenty one"], 2, attention=True)
    (g,) = got["translations"]
    assert g["translation"] == t.translation and g["output_tokens"] == t.output_tokens
    assert np.allclose(g["attention"], t.attention) and np.allclose(np.sum(g["attention"], 1), 1.0)

    p = unrolled.load(root / "tag")
    got = client.post("/api/runs/tag/tag", json={"texts": ["the old mill", "river runs"]}).json()
    assert got["sentences"] == [[list(pair) for pair in s] for s in p.tag(["the old mill", "river runs"])]

    p = unrolled.load(root / "forecast")
    got = client.post("/api/runs/forecast/forecast", json={}).json()
    expected = p.forecast()
    assert got["time"] == list(expected["time"]) and got["mean"] == expected["mean"].tolist()
    assert len(got["history"]["values"]) == len(got["history"]["time"]) > 0
    history = p.series().values[-60:].tolist()
    given = client.post("/api/runs/forecast/forecast", json={"history": history, "horizon": 1}).json()
    assert given["mean"] == p.forecast(1, history)["mean"].tolist() and "history" not in given


# ---- bad input -------------------------------------------------------------------------------
BAD = [
    ("/api/runs/nope/sample", {}, 404, "no run 'nope'"),
    ("/api/runs/lm/charlm/translate", {"text": "x"}, 405, "a lm run has no translate"),
    ("/api/runs/classify/sample", {}, 405, "answers predict"),
    ("/api/runs/lm/charlm/sample", {"prime": "\u2603"}, 422, "not in the model's vocabulary"),
    ("/api/runs/lm/charlm/stream", {"prime": "\u2603"}, 422, "not in the model's vocabulary"),
    ("/api/runs/lm/charlm/sample", {"temperature": -1}, 422, "temperature"),
    ("/api/runs/lm/charlm/sample", {"length": 0}, 422, "length"),
    ("/api/runs/lm/charlm/sample", {"length": 100_000}, 413, "--max-length"),
    ("/api/runs/lm/charlm/score", {"text": ""}, 422, "text"),
    ("/api/runs/lm/charlm/score", {"text": "x" * 20_000}, 413, "--max-text"),
    ("/api/runs/lm/charlm/neurons", {"text": "the", "signal": "layer 9 h"}, 422, "no signal 'layer 9 h'"),
    ("/api/runs/lm/charlm/neurons", {"text": "the", "signal": "layer 0 h", "unit": 999}, 422, "out of range"),
    ("/api/runs/classify/predict", {"text": "  "}, 422, "text 1 is empty"),
    ("/api/runs/classify/predict", {}, 422, "give either 'text'"),
    ("/api/runs/classify/predict", {"texts": []}, 422, "texts"),
    ("/api/runs/translate/translate", {"text": "seven", "beam": 0}, 422, "beam"),
    ("/api/runs/translate/translate", {"text": "seven", "beam": 999}, 413, "beam 999"),
    ("/api/runs/tag/tag", {"text": 5}, 422, "text"),
    ("/api/runs/forecast/forecast", {"horizon": 0}, 422, "horizon"),
    ("/api/runs/forecast/forecast", {"horizon": 5}, 422, "a direct model forecasts at most"),
    ("/api/runs/forecast/forecast", {"history": [1.0, 2.0]}, 422, "history"),
]


@pytest.mark.parametrize(("path", "body", "code", "detail"), BAD)
def test_bad_input_is_a_4xx_with_one_line(client, path, body, code, detail) -> None:
    r = client.post(path, json=body)
    assert r.status_code == code, r.text
    message = r.json()["detail"]
    assert isinstance(message, str) and "\n" not in message and detail in message, message


def test_a_body_that_is_not_json_or_too_large(root) -> None:
    c = TestClient(create_app(root, limits=Limits(body=1000)))
    headers = {"content-type": "application/json"}
    r = c.post("/api/runs/lm/charlm/sample", content=b'{"prime": ', headers=headers)
    assert r.status_code == 400 and r.json()["detail"] == "the request body is not valid JSON"
    r = c.post("/api/runs/lm/charlm/score", content=json.dumps({"text": "x" * 5000}), headers=headers)
    assert r.status_code == 413 and "limit is 1000" in r.json()["detail"]


ESCAPES = [
    "..%2Fetc",
    "..%2F..%2Frun",
    "%2Fetc%2Fpasswd",
    "lm%2F..%2Ftag",
    "/etc",
    "%2E",
    "lm%2F%2E%2Fcharlm",
]


@pytest.mark.parametrize("escape", ESCAPES)
def test_a_run_id_never_leaves_the_root(client, escape) -> None:
    r = client.get(f"/api/runs/{escape}/metrics")
    assert r.status_code == 404 and "no run" in r.json()["detail"], (escape, r.text)
    r = client.post(f"/api/runs/{escape}/sample", json={})
    assert r.status_code == 404 and "no run" in r.json()["detail"], (escape, r.text)


def test_a_symlink_out_of_the_root_is_not_a_run(root, tmp_path) -> None:
    outside = tmp_path / "outside"
    shutil.copytree(root / "tag", outside)
    served = tmp_path / "served"
    served.mkdir()
    (served / "escape").symlink_to(outside, target_is_directory=True)
    c = TestClient(create_app(served))
    assert c.get("/api/runs").json()["runs"] == []  # not listed ...
    r = c.post("/api/runs/escape/tag", json={"text": "the old mill"})
    assert r.status_code == 404 and "no run 'escape'" in r.json()["detail"]  # ... nor served


def test_a_damaged_run_is_a_409_and_the_others_still_serve(root, tmp_path) -> None:
    served = tmp_path / "runs"
    shutil.copytree(root, served)
    weights = ckpt.weights_file(served / "tag")
    weights.write_bytes(weights.read_bytes()[:100])
    c = TestClient(create_app(served))
    r = c.post("/api/runs/tag/tag", json={"text": "the old mill"})
    assert r.status_code == 409 and "run 'tag' cannot be loaded" in r.json()["detail"]
    assert c.post("/api/runs/classify/predict", json={"text": "old mill"}).status_code == 200
    assert c.get("/api/runs").status_code == 200


def test_models_are_cached_and_loaded_again_after_a_save(root, tmp_path) -> None:
    served = tmp_path / "runs"
    shutil.copytree(root, served)
    app = create_app(served, cache=2)
    c, models = TestClient(app), app.state.models
    for run, verb, body in [
        ("tag", "tag", {"text": "the"}),
        ("classify", "predict", {"text": "old"}),
        ("forecast", "forecast", {}),
    ]:
        assert c.post(f"/api/runs/{run}/{verb}", json=body).status_code == 200
    assert models.loaded() == ["classify", "forecast"]  # the least recently used went
    first = models.get("forecast")
    assert models.get("forecast") is first
    resume = ["train", "forecast", "--resume", str(served / "forecast")]
    assert main([*resume, "--max-steps", "2", "--no-progress"]) == 0
    again = models.get("forecast")
    assert again is not first and again.run.step == ckpt.trainer_state(served / "forecast")["step"] == 5


# ---- the command -----------------------------------------------------------------------------
def test_the_command_s_own_errors_are_one_line(tmp_path, capsys, monkeypatch) -> None:
    assert main(["serve", str(tmp_path / "nope")]) == 2
    assert "ROOT" in capsys.readouterr().err
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        assert main(["serve", str(tmp_path), "--port", str(busy.getsockname()[1])]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"port {busy.getsockname()[1]} is in use" in err
    finally:
        busy.close()
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "uvicorn" else real(n, *a))
    assert main(["serve", str(tmp_path)]) == 2
    assert "pip install 'unrolled[serve]'" in capsys.readouterr().err


def serve(root: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """``unrolled serve ROOT --port 0`` in a process of its own; returns it and its URL."""
    cmd = [sys.executable, "-m", "unrolled", "serve", str(root), "--port", "0", "--device", "cpu", *extra]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    if not line.startswith("unrolled serve: http://127.0.0.1:"):
        proc.kill()
        raise AssertionError(f"unexpected first line: {line!r}{proc.stderr.read()}")
    url = line.split()[2]
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1].rstrip("/"))), 1).close()
            return proc, url
        except OSError:
            assert time.time() < deadline, "the server does not answer"
            time.sleep(0.05)


def test_the_real_server_answers_the_example_of_the_docs(root) -> None:
    proc, url = serve(root)
    try:
        run_id, text = doc_function("serve.md", "first_sample")(url.rstrip("/"))
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stderr.close()
    assert run_id == "lm/charlm" and text == unrolled.load(root / run_id).sample("the", 80, seed=1)


# ---- the page, in headless Chromium ----------------------------------------------------------
def _chromium() -> str | None:
    for name in (os.environ.get("UNROLLED_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        path = name and shutil.which(name)
        if path:
            return path
    return None


def test_the_page_in_headless_chromium(root) -> None:
    """Click through the runs table and every panel; ``UNROLLED_SCREENSHOTS=DIR`` keeps a picture
    of each panel (docs/figures has them)."""
    browser_path = _chromium()
    if browser_path is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the [test] extra")
    shots = os.environ.get("UNROLLED_SCREENSHOTS")
    proc, url = serve(root)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            page.wait_for_selector("#runs tbody tr")
            assert page.locator("#runs tbody tr").count() == len(TASKS)
            if shots:
                page.screenshot(
                    path=str(Path(shots) / "serve-runs.png"),
                    clip={"x": 0, "y": 0, "width": 1100, "height": 330},
                )

            def open_run(run_id: str) -> None:
                page.click(f"#runs tbody tr[data-id='{run_id}']")
                page.wait_for_selector("#curves svg circle")  # a dot per validation
                assert page.locator("#curves svg").count() == 2

            def shot(name: str) -> None:
                if shots:
                    page.locator("#run").screenshot(path=str(Path(shots) / f"serve-{name}.png"))

            open_run("lm/charlm")
            page.fill("#panel-sample textarea[name=prime]", "the river")
            page.fill("#panel-sample input[name=length]", "60")
            page.fill("#panel-sample input[name=seed]", "3")
            page.click("#panel-sample button")
            expected = unrolled.load(root / "lm" / "charlm").sample("the river", 60, 0.8, None, 3)
            page.wait_for_function(
                "t => document.querySelector('#sample-out').textContent === t", arg="the river" + expected
            )
            page.fill("#panel-neurons textarea[name=text]", "the river runs where old mill stood")
            page.click("#panel-neurons button")
            page.wait_for_selector("#neurons-out span")
            assert page.locator("#neurons-out span").count() == len("the river runs where old mill stood")
            shot("charlm")

            open_run("translate")
            assert page.locator("#panel-sample").is_hidden() and page.locator("#panel-translate").is_visible()
            page.fill("#panel-translate input[name=text]", "three hundred and twelve")
            page.click("#panel-translate button")
            page.wait_for_selector("#attention-out svg rect")
            (t,) = unrolled.load(root / "translate").translate(["three hundred and twelve"])
            assert page.locator("#translate-out").text_content() == t
            shot("translate")

            open_run("tag")
            page.fill("#panel-tag input[name=text]", "the old mill")
            page.click("#panel-tag button")
            page.wait_for_selector("#tag-out .tag")
            (tagged,) = unrolled.load(root / "tag").tag(["the old mill"])
            assert page.locator("#tag-out .tag").all_text_contents() == [w + t for w, t in tagged]
            shot("tag")

            open_run("classify")
            page.fill("#panel-predict textarea[name=text]", "old mill calmish")
            page.click("#panel-predict button")
            page.wait_for_selector("#predict-out b")
            ((label, _),) = unrolled.load(root / "classify").predict(["old mill calmish"])
            assert page.locator("#predict-out b").text_content() == label

            open_run("forecast")
            page.click("#panel-forecast button")
            page.wait_for_selector("#forecast-out svg circle")  # a dot per forecast step
            assert page.locator("#forecast-out svg path").count() >= 2  # the history and the forecast
            shot("forecast")
            assert not errors, errors
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stderr.close()


# ---- a bounded load test (slow) --------------------------------------------------------------
def _request(url: str, body: dict | None = None) -> tuple[float, int, bytes]:
    """One request with the standard library: (seconds, status, body)."""
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data, {"Content-Type": "application/json"} if data else {})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            status, payload = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, payload = e.code, e.read()
        e.close()
    return time.perf_counter() - started, status, payload


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"n": len(ms), "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


WHAT = (
    "unrolled serve on 127.0.0.1, tiny runs: 200 requests from 20 concurrent clients, then the runs "
    "list while 4 samples of 5000 characters run"
)


@pytest.mark.slow
def test_200_requests_from_20_clients_are_all_answered_right(root, tmp_path) -> None:
    """20 threads send 10 requests each (samples, translations, the runs list) to one server: every
    answer is the one unrolled.load gives. Then the runs list is timed while 4 long samples run.
    The latencies go to UNROLLED_BENCH_RESULTS (a folder; benchmarks/results has one) or tmp_path."""
    from concurrent.futures import ThreadPoolExecutor

    lm, mt = unrolled.load(root / "lm" / "charlm"), unrolled.load(root / "translate")
    sentences = ["twenty one", "seven", "three hundred and four", "ninety"]
    expected_sample = {seed: lm.sample("the", 100, 0.8, None, seed) for seed in range(20)}
    expected_mt = dict(zip(sentences, mt.translate(sentences), strict=True))
    proc, url = serve(root)
    try:

        def client(k: int) -> list[tuple[str, float, bool]]:
            out = []
            for i in range(10):
                kind = ("sample", "translate", "runs")[(k + i) % 3]
                if kind == "sample":
                    seed = (k * 10 + i) % 20
                    s, code, payload = _request(
                        url + "api/runs/lm/charlm/sample", {"prime": "the", "length": 100, "seed": seed}
                    )
                    ok = code == 200 and json.loads(payload)["text"] == expected_sample[seed]
                elif kind == "translate":
                    text = sentences[(k + i) % len(sentences)]
                    s, code, payload = _request(url + "api/runs/translate/translate", {"text": text})
                    ok = (
                        code == 200
                        and json.loads(payload)["translations"][0]["translation"] == expected_mt[text]
                    )
                else:
                    s, code, payload = _request(url + "api/runs")
                    ok = code == 200 and len(json.loads(payload)["runs"]) == len(TASKS)
                out.append((kind, s, ok))
            return out

        with ThreadPoolExecutor(20) as pool:
            answers = [a for client_answers in pool.map(client, range(20)) for a in client_answers]
        assert len(answers) == 200 and all(ok for _, _, ok in answers), [a for a in answers if not a[2]][:3]

        with ThreadPoolExecutor(4) as pool:  # the runs list while long samples run
            long = [
                pool.submit(_request, url + "api/runs/lm/charlm/sample", {"length": 5000, "seed": s})
                for s in range(4)
            ]
            time.sleep(0.5)
            listed = []
            while not all(f.done() for f in long) and len(listed) < 50:
                s, code, _ = _request(url + "api/runs")
                assert code == 200
                listed.append(s)
            assert all(f.result()[1] == 200 for f in long)
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stderr.close()
    result = {
        "what": WHAT,
        "cpus": os.cpu_count(),
        **{
            kind: _percentiles([s for k, s, _ in answers if k == kind])
            for kind in ("sample", "translate", "runs")
        },
        "runs_list_during_long_samples": _percentiles(listed),
    }
    folder = Path(os.environ.get("UNROLLED_BENCH_RESULTS", tmp_path))
    stamp = time.strftime("%Y-%m-%d")
    (folder / f"serve-load-{stamp}-cpu{os.cpu_count()}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


def test_the_api_page_is_served_from_the_package(client) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and "/swagger/swagger-ui-bundle.js" in page.text
    assert "http" not in page.text  # nothing from the network: it works offline
    assert client.get("/swagger/swagger-ui-bundle.js").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/runs", "/api/runs/{run_id}/sample", "/api/runs/{run_id}/translate"} <= set(paths)
