"""Request bodies of the OpenAI-compatible API (the fields tunesmith acts on; other fields are ignored)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(_Body):
    """A text part of a message's content."""

    type: Literal["text"]
    text: str


class Message(_Body):
    """One chat message."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        """The content as one string."""
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(_Body):
    """Streaming extras."""

    include_usage: bool = False


class _Generation(_Body):
    model: str
    max_tokens: int | None = Field(None, ge=1, description="Longest answer in tokens.")
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="0 or absent: greedy, as tunesmith generate.")
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: str | list[str] | None = Field(None, description="Up to 4 sequences that end the answer (not included).")
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1, description="One answer per request.")

    def stops(self) -> list[str]:
        """The stop sequences as a list."""
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class ChatRequest(_Generation):
    """POST /v1/chat/completions."""

    messages: list[Message] = Field(..., min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class CompletionRequest(_Generation):
    """POST /v1/completions."""

    prompt: str


class ClassifyRequest(_Body):
    """POST /v1/classify."""

    model: str
    input: str | list[str] = Field(..., min_length=1)
