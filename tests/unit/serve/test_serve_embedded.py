"""The real embedded SmolLM2-135M: two adapter runs and their base served from one copy of the weights."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from openai import OpenAI
from serving import running_server, train_embedded_pair

from tunesmith.evaluate.generation import Decoding, answer

# Training two 135M adapters dominates: 267 s on the shared 2-core machine (load ~8), over the serve tests'
# budget, so it runs when asked: TUNESMITH_SERVE_EMBEDDED=1 pytest tests/unit/serve/test_serve_embedded.py
pytestmark = [
    pytest.mark.embedded,
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get("TUNESMITH_SERVE_EMBEDDED"), reason="set TUNESMITH_SERVE_EMBEDDED=1"),
]

PROMPTS = ["Write a one-line ad for green tea.", "Say hello to a new customer."]


def test_two_embedded_adapters_and_base_answer_alone_and_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The GGUF -> safetensors conversion is content-keyed and slow: share the user's cache.
    default = Path.home() / ".cache" / "tunesmith"
    monkeypatch.setenv("TUNESMITH_CACHE", os.environ.get("TUNESMITH_TEST_CACHE", str(default)))
    copy, loud = train_embedded_pair(tmp_path)
    _, copy_expected, _ = answer(copy, PROMPTS, None, Decoding(max_new_tokens=8), compare_base=False)
    with running_server([copy, loud]) as server:
        client = OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)

        def chat(model: str, prompt: str) -> str:
            messages = [{"role": "user", "content": prompt}]
            reply = client.chat.completions.create(model=model, messages=messages, max_tokens=8)  # type: ignore[arg-type]
            return reply.choices[0].message.content or ""

        assert {m.id for m in client.models.list().data} == {copy.name, loud.name, "smollm2-135m-instruct"}
        assert [chat(copy.name, p) for p in PROMPTS] == copy_expected
        jobs = [(m, p) for m in (copy.name, loud.name, "smollm2-135m-instruct") for p in PROMPTS]
        alone = [chat(*job) for job in jobs]
        with ThreadPoolExecutor(len(jobs)) as pool:
            together = list(pool.map(lambda job: chat(*job), jobs))
        assert together == alone and all(alone)
        assert max(server.app.state.batcher.batches) > 1  # type: ignore[attr-defined]
