"""OpenAI request bodies (completions, chat completions) and their translation to SamplingParams.

Fields follow the OpenAI API plus vLLM's extensions (`top_k`, `min_p`, `repetition_penalty`,
`min_tokens`, `ignore_eos`, `stop_token_ids`; structured output: `response_format` and
`guided_json` / `guided_choice` / `guided_regex`, read by `server.response_format`). Values are
checked by SamplingParams (a 400 naming the field, the value and the accepted range). Unknown
fields are ignored as OpenAI-compatible servers do, but a field this server cannot honour (suffix,
best_of, ...) set to anything but its neutral value is refused with a 400 naming it, never silently ignored.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from berth_runtime.sampling_params import SamplingParams, parse_logit_bias
from berth_runtime.server.errors import ApiError

if TYPE_CHECKING:
    from berth_runtime.engine.grammar import Grammar

MAX_CHOICES = 16


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class GenerationRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int = Field(default=1, ge=1, le=MAX_CHOICES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    # vLLM extensions
    top_k: int | None = None
    min_tokens: int = 0
    ignore_eos: bool = False
    stop_token_ids: list[int] | None = None
    repetition_penalty: float | None = None
    min_p: float | None = None
    response_format: Any = None

    def _check_supported(self) -> None:
        if self.stream_options is not None and not self.stream:
            raise ApiError(400, "'stream_options' is only allowed with stream=true", param="stream_options")

    def include_usage_in_stream(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def sampling_params(
        self, max_tokens: Any, choice_index: int, logprobs: int | None, grammar: Grammar | None = None
    ) -> SamplingParams:
        """SamplingParams for one choice; with a seed, choice i uses seed + i so choices differ."""
        seed = self.seed + choice_index if self.seed is not None else None
        stop: tuple[str, ...] = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        top_k = self.top_k if self.top_k is not None else 0
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=1.0 if self.temperature is None else self.temperature,
            top_k=0 if top_k == -1 else top_k,  # vLLM spells "disabled" as -1
            top_p=1.0 if self.top_p is None else self.top_p,
            seed=seed,
            stop=stop,
            stop_token_ids=tuple(self.stop_token_ids or ()),
            ignore_eos=self.ignore_eos,
            min_tokens=self.min_tokens,
            logprobs=logprobs,
            presence_penalty=_or_default(self.presence_penalty, 0.0),
            frequency_penalty=_or_default(self.frequency_penalty, 0.0),
            repetition_penalty=_or_default(self.repetition_penalty, 1.0),
            min_p=_or_default(self.min_p, 0.0),
            logit_bias=parse_logit_bias(self.logit_bias or {}),
            grammar=grammar,
        )


def _or_default(value: float | None, default: float) -> float:
    """An unset (null) field's neutral value."""
    return default if value is None else value


class CompletionRequest(GenerationRequest):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    logprobs: int | None = None
    suffix: str | None = None
    best_of: int | None = None

    def check_supported(self) -> None:
        self._check_supported()
        if self.suffix:
            raise ApiError(400, "'suffix' is not supported by this server", param="suffix")
        if self.best_of is not None and self.best_of != self.n:
            raise ApiError(
                400,
                f"'best_of'={self.best_of} is not supported; leave it unset or equal to n",
                param="best_of",
            )
        if self.echo and self.logprobs is not None:
            raise ApiError(400, "'echo' with 'logprobs' (prompt logprobs) is not supported", param="echo")

    def default_max_tokens(self) -> int:
        return 16


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    def as_template_message(self, index: int) -> dict[str, Any]:
        if self.content is None or isinstance(self.content, str):
            text = self.content or ""
        else:
            texts = []
            for part in self.content:
                if part.type != "text" or part.text is None:
                    raise ApiError(
                        400,
                        f"content part type {part.type!r} is not supported; accepted: text",
                        param=f"messages.{index}.content",
                    )
                texts.append(part.text)
            text = "".join(texts)
        message: dict[str, Any] = {"role": self.role, "content": text}
        if self.name is not None:
            message["name"] = self.name
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        if self.tool_calls:
            message["tool_calls"] = [_template_tool_call(call, index) for call in self.tool_calls]
        return message


def _template_tool_call(call: dict[str, Any], index: int) -> dict[str, Any]:
    """An assistant message's tool call as chat templates read it: `function.arguments` an object
    (templates write it with `tojson`), not OpenAI's JSON text."""
    function = call.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise ApiError(
            400,
            f"a tool call needs 'function' with a 'name'; got {call!r}",
            param=f"messages.{index}.tool_calls",
        )
    arguments = function.get("arguments", "{}")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except json.JSONDecodeError:
            raise ApiError(
                400,
                f"tool call arguments must be JSON; got {function.get('arguments')!r}",
                param=f"messages.{index}.tool_calls",
            ) from None
    return {**call, "function": {**function, "arguments": arguments}}


class ChatCompletionRequest(GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    tools: Any = None
    tool_choice: Any = None
    parallel_tool_calls: Any = None

    def check_supported(self) -> None:
        self._check_supported()
        if self.top_logprobs is not None and not self.logprobs:
            raise ApiError(400, "'top_logprobs' needs 'logprobs': true", param="top_logprobs")

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def logprobs_count(self) -> int | None:
        if not self.logprobs:
            return None
        return self.top_logprobs or 0

    def template_messages(self) -> list[dict[str, Any]]:
        return [message.as_template_message(index) for index, message in enumerate(self.messages)]
