"""Request bodies of the OpenAI-compatible API (the fields tunesmith acts on; other fields are ignored)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(_Body):
    """A text part of a message's content."""

    type: Literal["text"]
    text: str


class Message(_Body):
    """One chat message: an assistant's may carry ``tool_calls`` (content then optional), a tool's answers one."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    tool_calls: list[Any] | None = Field(None, description="An assistant's calls, in the OpenAI shape.")
    tool_call_id: str | None = Field(None, description="A tool message: the id of the call it answers.")
    name: str | None = None

    def text(self) -> str:
        """The content as one string."""
        if self.content is None:
            return ""
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)

    def plain(self) -> dict[str, Any]:
        """The message as a JSON object (absent fields left out), for the conversation reader."""
        return self.model_dump(exclude_none=True) | {"content": None if self.content is None else self.text()}


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
    tools: list[Any] | None = Field(None, description="OpenAI function tools the model may call.")
    tool_choice: str | dict[str, Any] | None = Field(None, description="none, auto, required or a named function.")


class CompletionRequest(_Generation):
    """POST /v1/completions."""

    prompt: str


class ClassifyRequest(_Body):
    """POST /v1/classify."""

    model: str
    input: str | list[str] = Field(..., min_length=1)
