"""Sequences in flight on one decoder: join with a batched prefill, take one token per step, leave at any step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunesmith.engine.decoder import Decoder


@dataclass
class Sequence:
    """One prompt being answered: its settings and the tokens chosen so far (the end-of-text token excluded)."""

    prompt: list[int]
    max_new_tokens: int
    adapter: int = -1  # index into the decoder's adapters; -1: the base model
    sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    tokens: list[int] = field(default_factory=list)
    ended: bool = False  # chose an end-of-text token
    generator: Any = None  # a sampled sequence's own random stream, so its answer depends on its seed only

    @property
    def finished(self) -> bool:
        """Ended, or at its token budget."""
        return self.ended or len(self.tokens) >= self.max_new_tokens


class Batch:
    """The rows of one decoder, in slot order."""

    def __init__(self, decoder: Decoder, eos: set[int]) -> None:
        import torch

        self.decoder, self.eos = decoder, eos
        self.rows: list[Sequence] = []
        self.next_tokens = torch.zeros(0, dtype=torch.long)

    def join(self, sequences: list[Sequence]) -> list[int]:
        """Prefill ``sequences`` together; each gets its first token (returned, in order)."""
        import torch

        if not sequences:
            return []
        for sequence in sequences:
            if sequence.sample:
                sequence.generator = torch.Generator().manual_seed(sequence.seed)
        logits = self.decoder.prefill([s.prompt for s in sequences], [s.adapter for s in sequences])
        tokens = choose(logits, sequences)
        self.rows.extend(sequences)
        self.next_tokens = torch.cat([self.next_tokens, tokens])
        return self._record(sequences, tokens)

    def step(self) -> list[int]:
        """One token for every row (returned, in row order)."""
        if not self.rows:
            return []
        tokens = choose(self.decoder.step(self.next_tokens), self.rows)
        self.next_tokens = tokens
        return self._record(self.rows, tokens)

    def leave(self, sequence: Sequence) -> None:
        """Take ``sequence`` out now (finished, or no longer wanted)."""
        row = self.rows.index(sequence)
        self.decoder.drop(row)
        last = len(self.rows) - 1
        self.next_tokens[row] = self.next_tokens[last]
        self.rows[row] = self.rows[last]
        self.rows.pop()
        self.next_tokens = self.next_tokens[:last].clone()

    def _record(self, sequences: list[Sequence], tokens: Any) -> list[int]:
        chosen = tokens.tolist()
        for sequence, token in zip(sequences, chosen, strict=True):
            if token in self.eos:
                sequence.ended = True
            else:
                sequence.tokens.append(token)
        return list(chosen)


def choose(logits: Any, sequences: list[Sequence]) -> Any:
    """Each row's next token: the most likely one, or a sample for sampled rows (temperature, then top-p)."""
    tokens = logits.argmax(dim=-1)
    for row, sequence in enumerate(sequences):
        if sequence.sample:
            tokens[row] = _sample(logits[row], sequence)
    return tokens


def _sample(logits: Any, sequence: Sequence) -> int:
    import torch

    scores = logits / sequence.temperature
    if sequence.top_p < 1.0:
        # As transformers' top-p: drop the least likely tokens whose total stays within 1 - top_p.
        ordered, order = torch.sort(scores, descending=False)
        cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative <= 1 - sequence.top_p
        drop[-1] = False
        scores = scores.masked_fill(drop.scatter(0, order, drop), float("-inf"))
    probabilities = scores.softmax(dim=-1)
    return int(torch.multinomial(probabilities, 1, generator=sequence.generator))
