"""Configuration: YAML loading, overrides, errors with key paths, round trip."""

import pytest

from scl_ray.config import (
    MODEL_PRESETS,
    Config,
    ConfigError,
    config_from_dict,
    load_config,
    save_config,
)


def test_defaults_are_valid_and_round_trip(tmp_path):
    config = load_config()
    assert config == Config()
    path = save_config(config, tmp_path / "config.yaml")
    assert load_config(path) == config


def test_overrides_and_presets_round_trip(tmp_path):
    config = load_config(None, ["model.preset=mdm", "model.dropout=0.2", "loop.strength=0.5",
                                "sweep.seeds=[0, 1, 2]", "evaluate.evaluator.epochs=3"])
    assert (config.model.layers, config.model.width, config.model.ff_size) == (8, 512, 1024)
    assert config.model.dropout == 0.2  # explicit keys win over the preset
    assert config.loop.strength == 0.5 and config.sweep.seeds == (0, 1, 2)
    assert config.evaluate.evaluator.epochs == 3
    assert load_config(save_config(config, tmp_path / "c.yaml")) == config


def test_every_preset_builds():
    for name, values in MODEL_PRESETS.items():
        model = config_from_dict({"model": {"preset": name}}).model
        assert all(getattr(model, key) == value for key, value in values.items())


@pytest.mark.parametrize(
    ("override", "path", "words"),
    [
        ("loop.strenght=1", "loop.strenght", "unknown key"),
        ("nosection.key=1", "nosection", "unknown key"),
        ("loop.strength=1.5", "loop.strength", "[0.0, 1.0]"),
        ("loop.generations=-1", "loop.generations", "[0, inf]"),
        ("correct.sim_hz=fast", "correct.sim_hz", "expected int"),
        ("sample.sampler=euler", "sample.sampler", "'ddim' | 'ddpm'"),
        ("train.lr=0", "train.lr", "(0.0, inf]"),
        ("sweep.strength=[0.5, 2]", "sweep.strength[1]", "[0.0, 1.0]"),
        ("sweep.seeds=[]", "sweep.seeds", "at least one"),
        ("model.width=250", "model.width", "divisible by heads"),
        ("evaluate.evaluator.epochs=0", "evaluate.evaluator.epochs", "[1, inf]"),
        ("data.source=humanml3d", "data.path", "HumanML3D directory"),
        ("correct.control_hz=500", "correct.control_hz", "sim_hz"),
        ("train.bf16=maybe", "train.bf16", "'auto' | 'on' | 'off'"),
        ("loop.accumulate=1", "loop.accumulate", "expected bool"),
        ("testing.fault=trial:2:raise", "testing.fault", "<marker file>"),
        ("testing.fault=trial:two:nonfinite", "testing.fault", "<generation>"),
    ],
)
def test_bad_values_name_the_key(override, path, words):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert info.value.path == path
    assert words in str(info.value)


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("loop:\n  strength: 3\n")
    with pytest.raises(ConfigError, match=r"loop.strength: .* in .*bad.yaml"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["no-equals-sign"])


def test_the_test_only_fault_is_parsed_once_in_the_config():
    assert Config().testing.parsed_fault() is None
    fault = load_config(None, ["testing.fault=n64_l0.5_s1:2:raise:/tmp/a:b"]).testing.parsed_fault()
    assert fault == ("n64_l0.5_s1", 2, "raise", "/tmp/a:b")  # the marker file may hold a colon
    assert load_config(None, ["testing.fault=t:1:nonfinite"]).testing.parsed_fault() == ("t", 1, "nonfinite", None)


def test_sections_are_frozen():
    config = Config()
    with pytest.raises(AttributeError):
        config.loop.strength = 0.3  # type: ignore[misc]


def test_command_line_errors_name_the_override_not_the_file(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("loop:\n  strength: 0.5\n")
    with pytest.raises(ConfigError) as info:
        load_config(good, ["loop.strength=3"])
    assert str(info.value).endswith("(from --set loop.strength=3)") and "good.yaml" not in str(info.value)
    with pytest.raises(ConfigError, match=r"loop.colour: unknown key.*\(from --set loop.colour=red\)$"):
        load_config(good, ["loop.colour=red"])
    with pytest.raises(ConfigError, match=r"^override '.x=1' must look like section.key=value$"):
        load_config(good, [".x=1"])
    with pytest.raises(ConfigError, match=r"override 'sweep.seeds=\[1': the value is not valid YAML$"):
        load_config(good, ["sweep.seeds=[1"])
    good.write_text("loop:\n  strength: 3\n")
    with pytest.raises(ConfigError, match=r"in .*good.yaml$"):
        load_config(good, ["loop.seed=1"])


def test_a_directory_is_not_a_config(tmp_path):
    with pytest.raises(ConfigError, match=r"is a directory; give a YAML file"):
        load_config(tmp_path)
