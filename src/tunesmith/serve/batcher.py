"""One worker thread answers generation requests, batched continuously.

Models the built-in engine runs (tunesmith.engine: Llama-family, LoRA adapters mixed per row) decode step
by step: a request that arrives while others are decoding joins at the next step (the prompts that came
together prefilled as one batch), and a row leaves the moment it ends: at its token budget, at an
end-of-text token or a stop sequence, or when its client went away. A sampled row draws from its own
seeded random stream, so its answer depends on its seed only. New text streams out as each token settles.

Other models (encoder-decoder, DoRA and other adapter kinds) are answered as before the engine: the
requests that arrived within a few milliseconds are grouped by model and run through one left-padded
``generate``, a stopping criterion following every row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tunesmith.serve.pool import BASE, Engine, Route
from tunesmith.serve.text import final_text, settled_text

log = logging.getLogger(__name__)


@dataclass
class Completion:
    """How a request ended."""

    text: str
    finish_reason: str  # stop | length | cancelled
    prompt_tokens: int
    completion_tokens: int


@dataclass
class GenerationRequest:
    """A tokenised prompt and its decoding settings; events go back to the asyncio side through ``events``."""

    route: Route
    input_ids: list[int]
    max_tokens: int
    strip: bool
    stop: list[str] = field(default_factory=list)
    sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    stream: bool = True  # whether the client reads text as it comes (else only the end is needed)
    cancelled: bool = False
    loop: asyncio.AbstractEventLoop | None = None
    events: asyncio.Queue[tuple[str, Any]] | None = None

    def bind(self) -> asyncio.Queue[tuple[str, Any]]:
        """Attach to the running loop; the queue gets ("delta", str), then ("done", Completion) or ("error", str)."""
        self.loop = asyncio.get_running_loop()
        self.events = asyncio.Queue()
        return self.events

    def emit(self, kind: str, payload: Any) -> None:
        """Hand an event to the asyncio side (from the worker thread)."""
        if self.loop is None or self.events is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed: the server is shutting down
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, payload))


class _Row:
    """One request's progress inside a running batch."""

    def __init__(self, request: GenerationRequest, eos: set[int]) -> None:
        self.request, self.eos = request, eos
        self.ids: list[int] = []
        self.steps = 0
        self.sent = ""
        self.finish: str | None = None

    def step(self, token: int) -> None:
        request = self.request
        if request.cancelled:
            self.finish = "cancelled"
            return
        self.steps += 1
        if token in self.eos:
            self.finish = "stop"
            return
        self.ids.append(token)
        if not request.stop and not request.stream:  # nothing to look at before the end
            if self.steps >= request.max_tokens:
                self.finish = "length"
            return
        text = self._text()
        if request.stop and final_text(text, request.stop, False) != text:
            self.finish = "stop"
        elif self.steps >= request.max_tokens:
            self.finish = "length"
        else:
            self._send(settled_text(text, request.stop, request.strip))

    def close(self) -> None:
        request = self.request
        text = final_text(self._text(), request.stop, request.strip)
        self._send(text)
        reason = self.finish or "length"
        request.emit("done", Completion(text, reason, len(request.input_ids), self.steps))

    def _text(self) -> str:
        return str(self.request.route.tokenizer.decode(self.ids, skip_special_tokens=True))

    def _send(self, text: str) -> None:
        # Only ever extend what the client has: a settled prefix cannot change, so this always holds.
        if len(text) > len(self.sent) and text.startswith(self.sent):
            self.request.emit("delta", text[len(self.sent) :])
            self.sent = text


class Batcher:
    """The worker thread and its queue."""

    def __init__(self, window_s: float = 0.005, max_batch: int = 32) -> None:
        self.window_s, self.max_batch = window_s, max_batch
        self._queue: queue.Queue[GenerationRequest | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="tunesmith-batcher", daemon=True)
        self._lanes: dict[int, _Lane] = {}  # per engine the built-in engine runs, by id
        self.batches: list[int] = []  # rows together after each join (or per generate): for tests, the benchmark
        self.cancelled_rows = 0  # rows stopped early because their client went away

    def start(self) -> None:
        """Start answering."""
        self._thread.start()

    def stop(self) -> None:
        """Finish the rows in progress and end the thread."""
        self._queue.put(None)
        self._thread.join(timeout=30)

    def submit(self, request: GenerationRequest) -> None:
        """Queue a request (from the event loop)."""
        self._queue.put(request)

    def _loop(self) -> None:
        stopping = False
        while True:
            busy = any(lane.busy for lane in self._lanes.values())
            if stopping and not busy:
                return
            pending, stop_now = ([], False) if stopping else self._take(block=not busy)
            stopping = stopping or stop_now
            slow = []
            for request in pending:
                if request.cancelled:
                    continue
                engine = request.route.engine
                if engine.fast is None:
                    slow.append(request)
                else:
                    self._lane(engine).waiting.append(request)
            for group in _groups(slow, self.max_batch):
                self._run(group)
            for lane in self._lanes.values():
                if lane.busy:
                    self.cancelled_rows += lane.advance(self.batches)

    def _take(self, block: bool) -> tuple[list[GenerationRequest], bool]:
        """What is queued: waiting for a first request when idle (then a few ms for company), else no wait."""
        if block:
            first = self._queue.get()
            if first is None:
                return [], True
            return self._collect(first)
        pending: list[GenerationRequest] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return pending, False
            if item is None:
                return pending, True
            pending.append(item)

    def _lane(self, engine: Engine) -> _Lane:
        lane = self._lanes.get(id(engine))
        if lane is None:
            lane = self._lanes[id(engine)] = _Lane(engine, self.max_batch)
        return lane

    def _collect(self, first: GenerationRequest) -> tuple[list[GenerationRequest], bool]:
        pending, deadline = [first], time.monotonic() + self.window_s
        while len(pending) < self.max_batch * 4:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                return pending, True
            pending.append(item)
        return pending, False

    def _run(self, group: list[GenerationRequest]) -> None:
        rows = [_Row(r, _eos_ids(r.route)) for r in group if not r.cancelled]
        if not rows:
            return
        engine = group[0].route.engine
        try:
            with engine.lock:
                _generate(engine, rows)
        except Exception as err:  # a failed batch answers its requests with an error; the server goes on
            log.exception("generation failed")
            for row in rows:
                row.request.emit("error", f"generation failed: {err}")
            return
        self.batches.append(len(rows))
        for row in rows:
            self.cancelled_rows += row.finish == "cancelled"
            row.close()


class _Lane:
    """The rows decoding on one engine-run model: they join and leave between its steps."""

    def __init__(self, engine: Engine, max_batch: int) -> None:
        from tunesmith.engine import Batch

        self.engine, self.max_batch = engine, max_batch
        self.batch = Batch(engine.fast.decoder(), set())  # rows end through _Row, which knows each route's eos
        self.rows: dict[int, _Row] = {}  # by id() of the row's engine Sequence
        self.waiting: list[GenerationRequest] = []
        self.cancelled = 0

    @property
    def busy(self) -> bool:
        """Rows decoding or waiting to join."""
        return bool(self.waiting or self.batch.rows)

    def advance(self, sizes: list[int]) -> int:
        """Drop cancelled rows, one token for every row, then let waiting requests join; rows cancelled."""
        before = self.cancelled
        self._drop_cancelled()
        try:
            with self.engine.lock:
                if self.batch.rows:
                    self._feed(self.batch.rows, self.batch.step())
                joining = self._joining()
                if joining:
                    self._feed(joining, self.batch.join(joining))
                    sizes.append(len(self.batch.rows))
        except Exception as err:  # the lane's requests get an error; its cache starts afresh, the server goes on
            log.exception("generation failed")
            self._fail(f"generation failed: {err}")
        return self.cancelled - before

    def _joining(self) -> list[Any]:
        from tunesmith.engine import Sequence

        room = self.max_batch - len(self.batch.rows)
        taken, self.waiting = self.waiting[:room], self.waiting[room:]
        sequences = []
        for request in taken:
            if request.cancelled:
                continue
            adapter = self.engine.fast.adapter_index(request.route.adapter)
            sequence = Sequence(
                request.input_ids, request.max_tokens, adapter, request.sample, request.temperature,
                request.top_p, request.seed,
            )  # fmt: skip
            self.rows[id(sequence)] = _Row(request, _eos_ids(request.route))
            sequences.append(sequence)
        return sequences

    def _feed(self, sequences: list[Any], tokens: list[int]) -> None:
        for sequence, token in zip(list(sequences), tokens, strict=True):
            row = self.rows[id(sequence)]
            row.step(token)
            if row.finish is not None:
                self._close(sequence)

    def _close(self, sequence: Any) -> None:
        self.batch.leave(sequence)
        row = self.rows.pop(id(sequence))
        self.cancelled += row.finish == "cancelled"
        row.close()

    def _drop_cancelled(self) -> None:
        for sequence in [s for s in self.batch.rows if self.rows[id(s)].request.cancelled]:
            self.rows[id(sequence)].finish = "cancelled"
            self._close(sequence)

    def _fail(self, message: str) -> None:
        from tunesmith.engine import Batch

        for row in self.rows.values():
            row.request.emit("error", message)
        self.rows.clear()
        self.batch = Batch(self.engine.fast.decoder(), set())


def _groups(pending: list[GenerationRequest], max_batch: int) -> Iterator[list[GenerationRequest]]:
    groups: dict[tuple[int, str | None], list[GenerationRequest]] = {}
    for request in pending:
        if request.cancelled:
            continue
        if request.sample:
            yield [request]  # one seeded sample per generate: its answer must not depend on its neighbours
            continue
        engine = request.route.engine
        key = (id(engine), None if engine.mixed else request.route.adapter)
        groups.setdefault(key, []).append(request)
    for group in groups.values():
        for start in range(0, len(group), max_batch):
            yield group[start : start + max_batch]


def _generate(engine: Engine, rows: list[_Row]) -> None:
    import torch
    from transformers import StoppingCriteriaList

    from tunesmith.models.precision import autocast

    first = rows[0].request
    tokenizer = first.route.tokenizer
    width = max(len(row.request.input_ids) for row in rows)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(r.request.input_ids)) + r.request.input_ids for r in rows])
    mask = torch.tensor([[0] * (width - len(r.request.input_ids)) + [1] * len(r.request.input_ids) for r in rows])
    # Encoder-decoder models answer in a separate decoder sequence that starts with one start token.
    prompt_width = 1 if first.route.form.encoder_decoder else width
    kwargs = _decoding_kwargs(tokenizer, first, max(r.request.max_tokens for r in rows))
    kwargs["stopping_criteria"] = StoppingCriteriaList([_RowTracker(rows, prompt_width)])
    torch.manual_seed(first.seed)
    with torch.inference_mode(), autocast(engine.precision), _adapter_scope(engine, rows, kwargs):
        engine.model.generate(input_ids=input_ids, attention_mask=mask, **kwargs)


@contextlib.contextmanager
def _adapter_scope(engine: Engine, rows: list[_Row], kwargs: dict[str, Any]) -> Iterator[None]:
    adapters = [row.request.route.adapter for row in rows]
    if engine.mixed:
        kwargs["adapter_names"] = adapters  # peft runs each row through its own LoRA (or none for BASE)
        yield
    elif adapters[0] == BASE:
        with engine.model.disable_adapter():
            yield
    else:
        yield


def _decoding_kwargs(tokenizer: Any, request: GenerationRequest, max_new_tokens: int) -> dict[str, Any]:
    # tunesmith generate's own settings, so a request answers as `tunesmith generate` does.
    from tunesmith.evaluate.generation import Decoding, generate_kwargs

    decoding = Decoding(max_new_tokens, request.sample, request.temperature, request.top_p, 1.0, request.seed)
    return generate_kwargs(tokenizer, decoding)


def _eos_ids(route: Route) -> set[int]:
    eos = route.tokenizer.eos_token_id
    return {int(eos)} if eos is not None else set()


class _RowTracker:
    """A stopping criterion: feeds each row its new token and marks rows that are done."""

    def __init__(self, rows: list[_Row], prompt_width: int) -> None:
        self.rows, self.prompt_width = rows, prompt_width

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        done = []
        for index, row in enumerate(self.rows):
            if row.finish is None:
                row.step(int(input_ids[index, -1]))
            done.append(row.finish is not None)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
