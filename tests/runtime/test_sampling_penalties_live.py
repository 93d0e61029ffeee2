"""Penalties, min_p and logit_bias on the live server through the real clients: the `openai` SDK
(completions and chat; `repetition_penalty` and `min_p` as vLLM's extra_body fields), `tritonclient`
request parameters and the Triton generate endpoint. logit_bias +100 forces a token and -100 bans
any token, even when sampling; a penalty changes greedy output; a bad value is a 400 naming the
field, value and range; an id outside the vocabulary is a 400 naming the id and the vocabulary
size. The server fixture is in live_api_fixtures.py."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest
import tokenizers
import tritonclient.http as httpclient
from conftest import TINY_VOCAB_SIZE
from live_api import PROMPT, as_text, auth, text_inputs
from live_server import LiveServer

pytest_plugins = ["live_api_fixtures"]

GREEDY = {"temperature": 0, "extra_body": {"ignore_eos": True}}


@pytest.fixture(scope="module")
def tokenizer(tiny_llama_dir: Path) -> tokenizers.Tokenizer:
    return tokenizers.Tokenizer.from_file(str(tiny_llama_dir / "tokenizer.json"))


def word_tokens(tokenizer: tokenizers.Tokenizer) -> list[tuple[int, str]]:
    """Ids of the tiny BPE whose text is a plain word (no byte pieces), with that text; longest first."""
    words = []
    for token_id in range(tokenizer.get_vocab_size()):
        text = tokenizer.decode([token_id])
        if len(text) >= 3 and text.isascii() and text.isalpha():
            words.append((token_id, text))
    return sorted(words, key=lambda word: (-len(word[1]), word[0]))


def test_logit_bias_plus_100_forces_a_token_in_completions_and_chat(
    oai: openai.OpenAI, tokenizer: tokenizers.Tokenizer
) -> None:
    token_id, text = word_tokens(tokenizer)[0]
    completion = oai.completions.create(
        model="tiny", prompt=PROMPT, max_tokens=5, seed=3, logit_bias={str(token_id): 100}
    )
    assert completion.choices[0].text == text * 5
    chat = oai.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Say something."}],
        max_tokens=4,
        logit_bias={str(token_id): 100},
        **GREEDY,  # type: ignore[arg-type]
    )
    assert chat.choices[0].message.content == text * 4


def test_logit_bias_minus_100_bans_tokens_even_when_sampling(
    oai: openai.OpenAI, tokenizer: tokenizers.Tokenizer
) -> None:
    allowed = dict(word_tokens(tokenizer)[2:4])  # two three-letter words
    assert all(len(text) == 3 for text in allowed.values())
    banned = {str(token_id): -100 for token_id in range(TINY_VOCAB_SIZE) if token_id not in allowed}
    completion = oai.completions.create(
        model="tiny", prompt=PROMPT, max_tokens=12, temperature=1.0, seed=5, logit_bias=banned
    )
    text = completion.choices[0].text
    chunks = [text[start : start + 3] for start in range(0, len(text), 3)]
    assert len(chunks) == 12 and set(chunks) <= set(allowed.values()), text


def test_penalties_and_min_p_reach_the_engine(oai: openai.OpenAI) -> None:
    def greedy_text(**fields: object) -> str:
        extra = {"ignore_eos": True, **fields.pop("extra_body", {})}  # type: ignore[dict-item]
        completion = oai.completions.create(
            model="tiny", prompt=PROMPT, max_tokens=24, temperature=0, extra_body=extra, **fields
        )
        return completion.choices[0].text

    plain = greedy_text()
    assert greedy_text(extra_body={"min_p": 0.5}) == plain  # min_p never changes greedy
    penalised = [
        greedy_text(frequency_penalty=2.0),
        greedy_text(presence_penalty=2.0),
        greedy_text(extra_body={"repetition_penalty": 2.0}),
    ]
    assert all(text != plain for text in penalised), (plain, penalised)
    assert greedy_text(frequency_penalty=2.0) == penalised[0]  # and deterministically so


@pytest.mark.parametrize(
    ("fields", "param", "message"),
    [
        ({"presence_penalty": 2.5}, "presence_penalty", "2.5; accepted: a number in [-2, 2]"),
        ({"frequency_penalty": -3}, "frequency_penalty", "accepted: a number in [-2, 2]"),
        ({"extra_body": {"repetition_penalty": 0}}, "repetition_penalty", "accepted: a number > 0"),
        ({"extra_body": {"min_p": 1.5}}, "min_p", "1.5; accepted: a number in [0, 1]"),
        ({"logit_bias": {"5": 300}}, "logit_bias.5", "300.0; accepted: a number in [-100, 100]"),
        ({"logit_bias": {"five": 1}}, "logit_bias", "'five'; accepted: a mapping of token ids"),
        (
            {"logit_bias": {"100000": 5}},
            "logit_bias",
            f"100000; accepted: token ids in 0..{TINY_VOCAB_SIZE - 1} "
            f"(the model's vocabulary size is {TINY_VOCAB_SIZE})",
        ),
    ],
)
def test_bad_values_are_400_naming_field_value_and_range(
    oai: openai.OpenAI, fields: dict[str, object], param: str, message: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        oai.completions.create(model="tiny", prompt=PROMPT, max_tokens=2, **fields)  # type: ignore[call-overload]
    error = raised.value.body
    assert isinstance(error, dict)
    assert error["param"] == param and message in error["message"], error


def test_triton_parameters_and_generate_accept_the_same_names(
    server: LiveServer, triton: httpclient.InferenceServerClient, tokenizer: tokenizers.Tokenizer
) -> None:
    token_id, text = word_tokens(tokenizer)[0]
    parameters = {
        "temperature": 0,
        "ignore_eos": True,
        "logit_bias": json.dumps({str(token_id): 100}),
        "frequency_penalty": 0.5,
        "presence_penalty": 0.5,
        "repetition_penalty": 1.2,
        "min_p": 0.1,
    }
    result = triton.infer("tiny", text_inputs([PROMPT], 3), parameters=parameters, headers=auth())
    assert [as_text(value) for value in result.as_numpy("text_output")] == [text * 3]
    body = {
        "text_input": PROMPT,
        "max_tokens": 3,
        "logit_bias": {str(token_id): 100},
        "parameters": {"temperature": 0, "ignore_eos": True, "repetition_penalty": 1.5},
    }
    reply = httpx.post(f"{server.url}/v2/models/tiny/generate", json=body, headers=auth(), timeout=60)
    assert reply.status_code == 200, reply.text
    assert reply.json()["text_output"] == text * 3
    body["parameters"] = {"min_p": 2}
    refused = httpx.post(f"{server.url}/v2/models/tiny/generate", json=body, headers=auth(), timeout=60)
    assert refused.status_code == 400
    assert "'min_p': 2.0; accepted: a number in [0, 1]" in refused.json()["error"]
