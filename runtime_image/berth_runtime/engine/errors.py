"""Errors the engine raises when it refuses a request; the server maps each to an HTTP status."""

from __future__ import annotations


class PromptTooLong(ValueError):
    """The prompt plus the minimum output does not fit the context (server: 400)."""

    def __init__(self, prompt_tokens: int, min_output_tokens: int, max_model_len: int) -> None:
        super().__init__(
            f"the prompt has {prompt_tokens} tokens and at least {min_output_tokens} must be generated, "
            f"but this model's context is {max_model_len} tokens (max_model_len); shorten the prompt"
        )
        self.prompt_tokens = prompt_tokens
        self.min_output_tokens = min_output_tokens
        self.max_model_len = max_model_len


class QueueFull(RuntimeError):
    """The waiting queue is at --max-queue (server: 503 with Retry-After)."""

    def __init__(self, max_queue: int) -> None:
        super().__init__(
            f"the engine's waiting queue is full ({max_queue} requests, --max-queue); retry later"
        )
        self.max_queue = max_queue


class EngineNotRunning(RuntimeError):
    """generate() was called before start() or after stop()."""


class EngineFailed(RuntimeError):
    """An engine step raised; the requests in flight at that moment fail with this (server: 500).
    The engine itself keeps serving new requests."""
