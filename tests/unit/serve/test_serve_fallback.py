"""Adapters peft cannot mix per row (DoRA here) are served from their own model, one adapter per batch."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from openai import OpenAI
from serving import running_server

from tunesmith.evaluate.generation import Decoding, answer

PROMPTS = ["Write an ad for tea aimed at retirees.", "hi there"]


def test_dora_run_and_its_base_answer_as_generate_alone_and_together(dora_run: Path) -> None:
    _, tuned, base = answer(dora_run, PROMPTS, None, Decoding(max_new_tokens=10), compare_base=True)
    with running_server([dora_run]) as server:
        route = server.app.state.pool.routes[dora_run.name]  # type: ignore[attr-defined]
        base_id = next(name for name in server.app.state.pool.routes if name != dora_run.name)  # type: ignore[attr-defined]
        assert not route.engine.mixed and server.app.state.pool.routes[base_id].engine is route.engine  # type: ignore[attr-defined]
        client = OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)

        def chat(model: str, prompt: str) -> str:
            messages = [{"role": "user", "content": prompt}]
            reply = client.chat.completions.create(model=model, messages=messages, max_tokens=10)  # type: ignore[arg-type]
            return reply.choices[0].message.content or ""

        jobs = [(model, p) for model in (dora_run.name, base_id) for p in PROMPTS] * 2
        alone = [chat(*job) for job in jobs]
        assert alone[:4] == tuned + base and tuned != base
        with ThreadPoolExecutor(len(jobs)) as pool:
            assert list(pool.map(lambda job: chat(*job), jobs)) == alone
