"""SamplingParams validation: every bad value is refused with a message naming the parameter."""

from __future__ import annotations

import pytest

from berth_runtime.sampling_params import InvalidParameter, SamplingParams


@pytest.mark.parametrize(
    ("kwargs", "param_name"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 2.5}, "max_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_k": -1}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"seed": "7"}, "seed"),
        ({"stop": ("",)}, "stop"),
        ({"stop": (3,)}, "stop"),
        ({"stop_token_ids": (-1,)}, "stop_token_ids"),
        ({"ignore_eos": 1}, "ignore_eos"),
        ({"min_tokens": -1}, "min_tokens"),
        ({"min_tokens": 20, "max_tokens": 10}, "min_tokens"),
        ({"logprobs": 21}, "logprobs"),
        ({"logprobs": -1}, "logprobs"),
    ],
)
def test_sampling_invalid_value_names_the_parameter(kwargs: dict[str, object], param_name: str) -> None:
    with pytest.raises(InvalidParameter) as error:
        SamplingParams(**kwargs)  # type: ignore[arg-type]
    assert error.value.param_name == param_name
    assert f"'{param_name}'" in str(error.value)
    assert "accepted" in str(error.value)
    assert isinstance(error.value, ValueError)


def test_sampling_lists_become_tuples_and_a_single_stop_string_is_accepted() -> None:
    params = SamplingParams(stop=["a", "bc"], stop_token_ids=[5, 6])  # type: ignore[arg-type]
    assert params.stop == ("a", "bc")
    assert params.stop_token_ids == (5, 6)
    assert SamplingParams(stop="end").stop == ("end",)  # type: ignore[arg-type]


def test_sampling_defaults_and_greedy() -> None:
    params = SamplingParams()
    assert params.max_tokens == 16 and params.temperature == 1.0 and not params.is_greedy
    assert SamplingParams(temperature=0).is_greedy
    assert SamplingParams(logprobs=0).logprobs == 0
