"""One validator for every JSON config: model, training and optimization reject bad values alike."""

from __future__ import annotations

import dataclasses
import math

import pytest

from molvae.config import config_from_dict, rule, validate_config
from molvae.errors import ConfigError
from molvae.model import ModelConfig
from molvae.optimization import OptimizeConfig
from molvae.training import TrainConfig

# (class, section name in messages, the smallest valid dict)
CONFIGS = [
    (ModelConfig, "model config", {"vocab_size": 10}),
    (TrainConfig, "training config", {}),
    (OptimizeConfig, "optimization config", {"objectives": ["qed"]}),
]
IDS = [c[0].__name__ for c in CONFIGS]


@pytest.mark.parametrize("cls, section, base", CONFIGS, ids=IDS)
def test_defaults_round_trip_through_json_dicts(cls, section, base) -> None:
    config = cls.from_dict(base)
    assert cls.from_dict(dataclasses.asdict(config)) == config


@pytest.mark.parametrize("cls, section, base", CONFIGS, ids=IDS)
def test_every_field_is_type_checked(cls, section, base) -> None:
    """No field escapes the validator: an object of no JSON type is refused in each one, by name."""
    for f in dataclasses.fields(cls):
        with pytest.raises(ConfigError, match=rf"^{section}: {f.name} must be "):
            cls.from_dict({**base, f.name: object()})


@pytest.mark.parametrize("cls, section, base", CONFIGS, ids=IDS)
def test_unknown_and_missing_keys(cls, section, base) -> None:
    with pytest.raises(ConfigError, match=rf"^{section}: unknown fields \['surprise'\]; known: "):
        cls.from_dict({**base, "surprise": 1})
    with pytest.raises(ConfigError, match=rf"^{section} must be a JSON object, got list"):
        cls.from_dict([])
    if base:
        with pytest.raises(ConfigError, match=rf"^{section}: {next(iter(base))} missing"):
            cls.from_dict({})


@pytest.mark.parametrize(
    "cls, base, field, value, expected",
    [
        # the same kinds of mistake in the three configs, with the same kind of message
        (ModelConfig, {"vocab_size": 10}, "latent_dim", 0, "a positive integer"),
        (TrainConfig, {}, "epochs", 0, "a positive integer"),
        (OptimizeConfig, {"objectives": ["qed"]}, "batch", 0, "a positive integer"),
        (ModelConfig, {"vocab_size": 10}, "latent_dim", True, "a positive integer"),  # bool is not an int
        (TrainConfig, {}, "batch_size", 32.0, "a positive integer"),
        (OptimizeConfig, {"objectives": ["qed"]}, "n_init", -1, "a non-negative integer"),
        (ModelConfig, {"vocab_size": 10}, "decoder_dropout", 1.0, "a finite number in [0, 1)"),
        (TrainConfig, {}, "word_dropout", -0.1, "a finite number in [0, 1)"),
        (TrainConfig, {}, "lr", math.nan, "a finite number > 0"),
        (TrainConfig, {}, "checkpoint_minutes", math.inf, "a finite number > 0"),
        (OptimizeConfig, {"objectives": ["qed"]}, "decode_temperature", "0.5", "a finite number > 0"),
        (ModelConfig, {"vocab_size": 10}, "representation", "inchi", "one of 'smiles', 'selfies'"),
        (TrainConfig, {}, "representation", "inchi", "one of 'smiles', 'selfies'"),
        (OptimizeConfig, {"objectives": ["qed"]}, "acquisition", "ei", "one of 'logei', 'ucb', 'ts'"),
        (TrainConfig, {}, "limit", 0, "a positive integer or null"),
        (OptimizeConfig, {"objectives": ["qed"]}, "threads", 0, "a positive integer or null"),
        (TrainConfig, {}, "smiles_column", 3, "a string or null"),
        (TrainConfig, {}, "progress", "yes", "true or false"),
        (OptimizeConfig, {"objectives": ["qed"]}, "objectives", "qed", "a list of strings"),
        (OptimizeConfig, {"objectives": ["qed"]}, "constraints", [], "an object"),
        (ModelConfig, {"vocab_size": 10}, "vocab_size", 4, "an integer >= 5"),
        (TrainConfig, {}, "max_tokens", 2, "an integer >= 3"),
    ],
)
def test_bad_values_are_refused_with_one_message_format(cls, base, field, value, expected) -> None:
    section = dict((c, s) for c, s, _ in CONFIGS)[cls]
    with pytest.raises(ConfigError) as info:
        cls.from_dict({**base, field: value})
    assert str(info.value) == f"{section}: {field} must be {expected}, got {value!r}"


@pytest.mark.parametrize(
    "cls, base, field, value",
    [
        (TrainConfig, {}, "limit", None),
        (TrainConfig, {}, "lr", 1),  # an integer is a number
        (OptimizeConfig, {"objectives": ["qed"]}, "threads", None),
        (ModelConfig, {"vocab_size": 10}, "encoder_dropout", 0),
    ],
)
def test_good_edge_values_are_accepted(cls, base, field, value) -> None:
    assert getattr(cls.from_dict({**base, field: value}), field) == value


def test_validate_catches_values_set_in_python_too() -> None:
    """``validate()`` (used for configs built in code and by the CLI) runs the same checks as ``from_dict``."""
    with pytest.raises(ConfigError, match="^training config: kl_cycles must be a positive integer, got 0$"):
        dataclasses.replace(TrainConfig(), kl_cycles=0).validate()
    with pytest.raises(ConfigError, match="^model config: encoder_layers must be a positive integer, got 0$"):
        ModelConfig(vocab_size=10, encoder_layers=0).validate()
    with pytest.raises(ConfigError, match="^optimization config: one to three objectives, got 4$"):
        OptimizeConfig(objectives=["qed", "sa", "logp", "esol"]).validate()


def test_the_validator_works_on_any_dataclass() -> None:
    @dataclasses.dataclass
    class Example:
        name: str
        size: int = dataclasses.field(default=1, metadata=rule(ge=1, le=8))
        ratio: float | None = dataclasses.field(default=None, metadata=rule(gt=0.0, lt=1.0))

    assert config_from_dict(Example, {"name": "x", "size": 8, "ratio": 0.5}, "example") == Example("x", 8, 0.5)
    with pytest.raises(ConfigError, match=r"^example: size must be an integer in \[1, 8\], got 9$"):
        config_from_dict(Example, {"name": "x", "size": 9}, "example")
    with pytest.raises(ConfigError, match=r"^example: ratio must be a finite number in \(0, 1\) or null, got 1.0$"):
        validate_config(Example("x", ratio=1.0), "example")
