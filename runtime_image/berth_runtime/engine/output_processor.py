"""After a step: appends each sampled token, decides whether the sequence stops (EOS, stop token,
stop string, max_tokens, context limit) and builds the request's output delta.

Text is held back by (longest stop string - 1) characters while a request runs, so a stop string
arriving across several tokens is never streamed to the client before it is recognised.
"""

from __future__ import annotations

from berth_runtime.engine.outputs import RequestOutput, TokenLogprob
from berth_runtime.engine.sequence import Sequence


class OutputProcessor:
    def __init__(self, eos_token_ids: tuple[int, ...], max_model_len: int) -> None:
        self.eos_token_ids = frozenset(eos_token_ids)
        self.max_model_len = max_model_len

    def append_token(self, seq: Sequence, token_id: int, logprob: TokenLogprob | None) -> str | None:
        """Adds `token_id` to `seq`; returns the finish reason if the sequence is done, else None."""
        params = seq.params
        seq.token_ids.append(token_id)
        if logprob is not None:
            seq.logprobs.append(logprob)
        detokenizer = seq.detokenizer
        # The first min_tokens outputs were sampled with the end tokens masked; later ones may end.
        is_end_token = (not params.ignore_eos and token_id in self.eos_token_ids) or (
            token_id in params.stop_token_ids
        )
        if is_end_token and seq.num_output_tokens > params.min_tokens:
            # Ended by a token: what the earlier tokens still held back is text; the token's is not.
            if detokenizer is not None and (held := detokenizer.flush(seq.token_ids[:-1])):
                self._add_text(seq, held)  # trims at a stop string the held text may complete
            return "stop"
        reason: str | None = None
        if detokenizer is not None:
            new_text = detokenizer.step(seq.token_ids)
            if new_text:
                reason = self._add_text(seq, new_text)
        if reason is None and (
            seq.num_output_tokens >= params.max_tokens or seq.num_tokens >= self.max_model_len
        ):
            reason = "length"
            if detokenizer is not None and (held := detokenizer.flush(seq.token_ids)):
                reason = self._add_text(seq, held) or reason
        return reason

    @staticmethod
    def _add_text(seq: Sequence, new_text: str) -> str | None:
        stops = seq.params.stop
        search_from = max(len(seq.output_text) - max((len(s) for s in stops), default=0) + 1, 0)
        seq.output_text += new_text
        if not stops:
            return None
        found = [index for stop in stops if (index := seq.output_text.find(stop, search_from)) >= 0]
        if not found:
            return None
        seq.output_text = seq.output_text[: min(found)]
        return "stop"

    @staticmethod
    def make_output(seq: Sequence) -> RequestOutput:
        """The delta since the previous output of `seq` (and marks it emitted)."""
        finished = seq.is_finished
        text_end = len(seq.output_text)
        if not finished and seq.params.stop:
            text_end -= max(len(stop) for stop in seq.params.stop) - 1
        text_end = max(text_end, seq.emitted_text_len)
        new_text = seq.output_text[seq.emitted_text_len : text_end]
        seq.emitted_text_len = text_end
        outputs = seq.output_token_ids
        new_tokens = outputs[seq.emitted_token_count :]
        logprobs = None
        if seq.params.logprobs is not None:
            logprobs = seq.logprobs[seq.emitted_token_count : len(outputs)]
        seq.emitted_token_count = len(outputs)
        return RequestOutput(
            request_id=seq.request_id,
            new_token_ids=new_tokens,
            new_text=new_text,
            finished=finished,
            finish_reason=seq.finish_reason,
            prompt_tokens=seq.num_prompt_tokens,
            completion_tokens=len(outputs),
            logprobs=logprobs,
        )
