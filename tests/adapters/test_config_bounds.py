"""asymviz.adapters.config: what a hostile adapter_config.json can make asymviz do is bounded."""

from __future__ import annotations

import pytest

from asymviz.adapters.config import AdapterConfig, check_pattern_key
from asymviz.errors import AdapterError


@pytest.mark.parametrize(
    "key",
    ["model.layers.0.self_attn.q_proj", "q_proj", ".*q_proj", r"layers\.\d+\.mlp\..*", "layers.(0|1).self_attn.q_proj",
     r"layer\.1[0-9]\.attention"],
)  # fmt: skip
def test_usual_pattern_keys_pass(key):
    check_pattern_key(key, "rank_pattern")


@pytest.mark.parametrize(
    "key, message",
    [
        ("(a+)+$", "nests a quantifier"),
        ("(x+x+)+y", "nests a quantifier"),
        ("(a|aa)+$", "alternation inside a quantifier"),
        (".*.*.*x", "3 unbounded quantifiers"),
        ("x{1000000}", "repeats 1,000,000 times"),
        ("a" * 300, "longer than 256"),
        ("[", "not a valid pattern"),
    ],
)
def test_pattern_keys_that_could_backtrack_are_refused(key, message):
    with pytest.raises(AdapterError, match=message):
        check_pattern_key(key, "rank_pattern")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"rank_pattern": [1, 2]}, "rank_pattern must be an object"),
        ({"alpha_pattern": "v"}, "alpha_pattern must be an object"),
        ({"r": 2**40}, "r must be a positive integer"),
        ({"lora_alpha": 10**400}, "lora_alpha must be a finite number"),
        ({"rank_pattern": {"q": 10**30}}, "is not valid"),
        ({"rank_pattern": {f"k{i}": 4 for i in range(1001)}}, "more than 1,000"),
    ],
)
def test_config_values_are_bounded(changes, message):
    with pytest.raises(AdapterError, match=message):
        AdapterConfig.from_dict({"peft_type": "LORA", "r": 4, **changes})


def test_config_file_nesting_and_digits(tmp_path):
    path = tmp_path / "adapter_config.json"
    path.write_text('{"r": 4, "x": ' + "[" * 50_000 + "]" * 50_000 + "}")
    with pytest.raises(AdapterError, match="nested too deeply"):
        AdapterConfig.from_file(path)
    path.write_text('{"r": ' + "9" * 5000 + "}")
    with pytest.raises(AdapterError, match="5,000 digits"):
        AdapterConfig.from_file(path)
