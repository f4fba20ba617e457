"""A real server on a free port, driven with the official openai client and raw HTTP."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI
from serving import API_KEY, Running

from tunesmith.evaluate.generation import Decoding, answer

PROMPTS = ["Write an ad for tea aimed at retirees.", "Write an ad for shoes aimed at runners.", "hi there"]
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def client(server: Running) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0, timeout=60)


def _ids(server: Running) -> tuple[str, str, str]:
    calm, loud = (name for name in server.runs if not name.startswith("clf"))
    base = next(p for p in server.app.state.pool.routes if p not in server.runs)  # type: ignore[attr-defined]
    return calm, loud, base


def _chat(client: OpenAI, model: str, prompt: str, **extra: Any) -> str:
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], max_tokens=12, **extra
    )
    return reply.choices[0].message.content or ""


def _chat_stream(client: OpenAI, model: str, prompt: str, **extra: Any) -> str:
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], max_tokens=12, stream=True, **extra
    )
    return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)


def test_models_lists_each_run_and_its_base(client: OpenAI, server: Running) -> None:
    calm, loud, base = _ids(server)
    cards = {m.id: m for m in client.models.list().data}
    clf = next(name for name in server.runs if name.startswith("clf"))
    assert set(cards) == {calm, loud, clf, base}
    assert cards[calm].model_extra == {"task": "causal_lm", "kind": "run", "parent": base}
    assert cards[base].model_extra == {"task": "causal_lm", "kind": "base", "parent": None}
    # The two LoRA runs and the base are one model in memory.
    routes = server.app.state.pool.routes  # type: ignore[attr-defined]
    assert routes[calm].engine is routes[loud].engine is routes[base].engine and routes[calm].engine.mixed


def test_each_model_answers_as_tunesmith_generate(client: OpenAI, server: Running) -> None:
    calm, loud, base = _ids(server)
    decoding = Decoding(max_new_tokens=12)
    _, calm_expected, _ = answer(server.runs[calm], PROMPTS, None, decoding, compare_base=False)
    _, loud_expected, base_expected = answer(server.runs[loud], PROMPTS, None, decoding, compare_base=True)
    assert base_expected is not None
    for model, expected in ((calm, calm_expected), (loud, loud_expected), (base, base_expected)):
        assert [_chat(client, model, p) for p in PROMPTS] == expected, model
    # The adapters really differ (from each other and from the base), so routing is being tested.
    assert len({calm_expected[0], loud_expected[0], base_expected[0]}) == 3


def test_run_system_prompt_applies_unless_the_request_brings_one(client: OpenAI, server: Running) -> None:
    calm, _, _ = _ids(server)  # trained with data.system "You write ads."
    plain = client.chat.completions.create(model=calm, messages=[{"role": "user", "content": "hi"}], max_tokens=1)
    own = client.chat.completions.create(
        model=calm,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        max_tokens=1,
    )
    route = server.app.state.pool.routes[calm]  # type: ignore[attr-defined]
    count = len(route.tokenizer(route.tokenizer.apply_chat_template(
        [{"role": "system", "content": "You write ads."}, {"role": "user", "content": "hi"}],
        tokenize=False, add_generation_prompt=True,
    ), add_special_tokens=False)["input_ids"])  # fmt: skip
    assert plain.usage is not None and own.usage is not None
    assert plain.usage.prompt_tokens == count and own.usage.prompt_tokens != count


def test_streaming_gives_the_non_streaming_text(client: OpenAI, server: Running) -> None:
    for model in _ids(server):
        for prompt in PROMPTS:
            whole = _chat(client, model, prompt)
            assert _chat_stream(client, model, prompt) == whole
            # A stop sequence from the middle of the answer cuts both the same way.
            stop = whole[len(whole) // 2 : len(whole) // 2 + 2]
            if stop.strip():
                cut = whole[: whole.find(stop)].strip()
                assert _chat(client, model, prompt, stop=[stop]) == cut
                assert _chat_stream(client, model, prompt, stop=stop) == cut


def test_raw_completions_stream_and_usage(client: OpenAI, server: Running) -> None:
    calm, _, _ = _ids(server)
    whole = client.completions.create(model=calm, prompt="Write an ad", max_tokens=10)
    assert whole.usage is not None and whole.usage.completion_tokens == 10
    assert whole.choices[0].finish_reason == "length"
    stream = client.completions.create(model=calm, prompt="Write an ad", max_tokens=10, stream=True)
    assert "".join(c.choices[0].text for c in stream) == whole.choices[0].text
    body = {"model": calm, "prompt": "Write an ad", "max_tokens": 3, "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body, headers=AUTH, timeout=60) as response:
        lines = [line for line in response.iter_lines() if line]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)


def test_sixteen_concurrent_requests_across_adapters_equal_one_at_a_time(client: OpenAI, server: Running) -> None:
    models = _ids(server)
    jobs = [(models[i % 3], PROMPTS[i % len(PROMPTS)] + " " * (i % 2)) for i in range(16)]
    alone = [_chat(client, m, p) for m, p in jobs]
    batcher = server.app.state.batcher  # type: ignore[attr-defined]
    before = len(batcher.batches)
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda job: _chat(client, *job), jobs))
    assert together == alone
    assert max(batcher.batches[before:]) > 1  # they were answered in shared, mixed-adapter batches


def test_sampling_is_seeded(client: OpenAI, server: Running) -> None:
    calm, _, _ = _ids(server)
    first = _chat(client, calm, "hi", temperature=1.0, seed=7)
    assert _chat(client, calm, "hi", temperature=1.0, seed=7) == first
    assert {_chat(client, calm, "hi", temperature=1.0, seed=s) for s in range(4)} != {first}


def test_classify_returns_labels_and_scores(server: Running) -> None:
    from tunesmith.evaluate.classify import predict_texts

    clf = next(name for name in server.runs if name.startswith("clf"))
    texts = ["great product number 3", "terrible delivery number 5"]
    reply = httpx.post(f"{server.url}/v1/classify", json={"model": clf, "input": texts}, headers=AUTH, timeout=60)
    assert reply.status_code == 200, reply.text
    route = server.app.state.pool.routes[clf]  # type: ignore[attr-defined]
    expected = predict_texts(route.run, texts)
    assert [(d["label"], pytest.approx(d["score"])) for d in reply.json()["data"]] == [
        (p.label, p.probability) for p in expected
    ]
    one = httpx.post(f"{server.url}/v1/classify", json={"model": clf, "input": texts[0]}, headers=AUTH, timeout=60)
    assert len(one.json()["data"]) == 1 and one.json()["data"][0]["label"] in {"positive", "negative"}


def _bad(server: Running, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, str) else json.dumps(body)
    headers = {"Content-Type": "application/json", **(AUTH if headers is None else headers)}
    return httpx.post(f"{server.url}{path}", content=content, headers=headers, timeout=60)


def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(client: OpenAI, server: Running) -> None:
    calm, _, _ = _ids(server)
    clf = next(name for name in server.runs if name.startswith("clf"))
    user = [{"role": "user", "content": "hi"}]
    cases = [
        ("/v1/chat/completions", {"model": "nope", "messages": user}, None, 404, "model"),
        ("/v1/chat/completions", {"model": calm}, None, 400, "messages"),
        ("/v1/chat/completions", {"model": calm, "messages": []}, None, 400, "messages"),
        ("/v1/chat/completions", '{"model": "x", "messages": [', None, 400, None),
        ("/v1/chat/completions", {"model": calm, "messages": user, "max_tokens": 0}, None, 400, "max_tokens"),
        ("/v1/chat/completions", {"model": calm, "messages": "hi"}, None, 400, "messages"),
        ("/v1/chat/completions", {"model": calm, "messages": user}, {}, 401, None),
        ("/v1/chat/completions", {"model": calm, "messages": user}, {"Authorization": "Bearer wrong"}, 401, None),
        ("/v1/completions", {"model": calm, "prompt": "word " * 600}, None, 400, "prompt"),
        ("/v1/chat/completions", {"model": clf, "messages": user}, None, 400, "model"),
        ("/v1/classify", {"model": calm, "input": "x"}, None, 400, "model"),
    ]
    for path, body, headers, status, param in cases:
        reply = _bad(server, path, body, headers)
        assert reply.status_code == status, (body, reply.text)
        error = reply.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"], reply.text
        assert error["param"] == param, reply.text
    too_long = _bad(server, "/v1/completions", {"model": calm, "prompt": "word " * 600}).json()["error"]
    assert "tokens" in too_long["message"] and "512" in too_long["message"]
    assert httpx.get(f"{server.url}/v1/models", timeout=10).status_code == 401
    assert httpx.get(f"{server.url}/health", timeout=10).json()["status"] == "ok"
    assert _chat(client, calm, "hi") == _chat(client, calm, "hi")  # still serving


def test_a_client_leaving_mid_stream_frees_its_row(client: OpenAI, server: Running) -> None:
    calm, _, _ = _ids(server)
    batcher = server.app.state.batcher  # type: ignore[attr-defined]
    before = batcher.cancelled_rows
    body = {"model": calm, "prompt": "Write", "max_tokens": 480, "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body, headers=AUTH, timeout=60) as response:
        next(line for line in response.iter_lines() if '"text": "' in line and '"text": ""' not in line)
    deadline = time.monotonic() + 20
    while batcher.cancelled_rows == before:
        assert time.monotonic() < deadline, "the row of a client that left kept generating"
        time.sleep(0.05)
    assert _chat(client, calm, "hi") is not None


def test_served_runs_must_be_completed(tmp_path: Path, lora_runs: tuple[Path, Path]) -> None:
    import shutil

    from tunesmith.errors import TunesmithError
    from tunesmith.serve.pool import load_pool

    with pytest.raises(TunesmithError, match="not a tunesmith run directory"):
        load_pool([tmp_path])
    running = Path(shutil.copytree(lora_runs[0], tmp_path / "still-running"))
    record = json.loads((running / "run.json").read_text())
    (running / "run.json").write_text(json.dumps(record | {"status": "running"}))
    with pytest.raises(TunesmithError, match="run is running, not completed"):
        load_pool([running])
