import re
from pathlib import Path

import pytest
import yaml

from tunesmith.config import LoraMethod, RunConfig, apply_override, dump_config, load_config
from tunesmith.errors import TunesmithError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


MINIMAL = "data:\n  train: ads.csv\n  prompt: 'Ad for {product}'\n  response: '{ad_text}'\n"


def test_defaults_fill_every_section(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.task == "causal_lm"
    assert cfg.model.name == "smollm2-135m-instruct"
    assert isinstance(cfg.method, LoraMethod) and cfg.method.target_modules == "all-linear"
    assert cfg.train.precision == "auto"
    assert cfg.data.train == (tmp_path / "ads.csv").resolve()


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    with pytest.raises(
        TunesmithError, match=r"config.yaml: unknown key train.learnig_rate; did you mean 'learning_rate'"
    ):
        load_config(write(tmp_path, MINIMAL + "train:\n  learnig_rate: 0.1\n"))


def test_unknown_method_key_is_checked_against_that_method(tmp_path: Path) -> None:
    with pytest.raises(TunesmithError, match=r"unknown key method.alpah; did you mean 'alpha'"):
        load_config(write(tmp_path, MINIMAL + "method:\n  name: lora\n  alpah: 8\n"))


def test_wrong_type_names_the_dotted_key(tmp_path: Path) -> None:
    with pytest.raises(TunesmithError, match=r"train.batch_size: Input should be a valid integer"):
        load_config(write(tmp_path, MINIMAL + "train:\n  batch_size: lots\n"))


def test_unknown_method_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(TunesmithError, match=r"method.name: unknown method 'qlora2'; choose one of full, freeze, lora"):
        load_config(write(tmp_path, MINIMAL + "method:\n  name: qlora2\n"))


def test_method_without_name_is_lora(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL + "method:\n  r: 4\n"))
    assert isinstance(cfg.method, LoraMethod) and cfg.method.r == 4


def test_causal_lm_needs_both_templates(tmp_path: Path) -> None:
    with pytest.raises(TunesmithError, match="data.response is required"):
        load_config(write(tmp_path, "data:\n  train: a.csv\n  prompt: '{x}'\n"))


def test_set_overrides_any_key_with_yaml_values(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    cfg = load_config(path, ["train.learning_rate=1e-4", "method.name=full", "data.system=Be brief."])
    assert cfg.train.learning_rate == pytest.approx(1e-4)
    assert cfg.method.name == "full"
    assert cfg.data.system == "Be brief."


def test_set_unknown_key_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(TunesmithError, match="unknown key train.epoch; did you mean 'epochs'"):
        load_config(write(tmp_path, MINIMAL), ["train.epoch=3"])


def test_set_without_equals_is_rejected() -> None:
    with pytest.raises(TunesmithError, match="expected key=value"):
        apply_override({}, "train.epochs")


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "config file is empty"), ("- a\n- b\n", "expected a mapping"), ("data: [unclosed\n", "invalid YAML")],
)
def test_malformed_files_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(TunesmithError, match=message) as caught:
        load_config(write(tmp_path, text))
    assert "config.yaml" in str(caught.value)


def test_missing_config_file() -> None:
    with pytest.raises(TunesmithError, match="config file not found"):
        load_config(Path("/nonexistent/config.yaml"))


def test_resolved_config_round_trips_with_the_same_hash(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL))
    again = RunConfig.model_validate(yaml.safe_load(dump_config(cfg)))
    assert again == cfg and again.config_hash() == cfg.config_hash()
    changed = load_config(write(tmp_path, MINIMAL), ["train.seed=7"])
    assert changed.config_hash() != cfg.config_hash()


def test_far_unknown_key_lists_the_known_keys(tmp_path: Path) -> None:
    with pytest.raises(TunesmithError, match="unknown key method.rank; known keys: alpha, dropout, name, r"):
        load_config(write(tmp_path, MINIMAL + "method:\n  name: lora\n  rank: 8\n"))


def test_track_section_rejects_unknown_keys_with_a_suggestion(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL + "track:\n  tensorboard: true\n"))
    assert cfg.track.tensorboard and not cfg.track.mlflow and cfg.track.mlflow_experiment is None
    with pytest.raises(TunesmithError, match=r"unknown key track.mlfow; did you mean 'mlflow'"):
        load_config(write(tmp_path, MINIMAL + "track:\n  mlfow: true\n"))


def test_trackers_do_not_change_the_config_hash(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL))
    tracked = load_config(write(tmp_path, MINIMAL), ["track.mlflow=true", "track.mlflow_experiment=ads"])
    assert tracked.track.mlflow and tracked.config_hash() == cfg.config_hash()


CONVERSATIONS = "data:\n  train: chats.jsonl\n  messages: messages\n"


def test_a_conversation_config_needs_only_the_messages_column(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, CONVERSATIONS + "  tools: tools\n  loss_on: last\n"))
    assert (cfg.data.messages, cfg.data.tools, cfg.data.loss_on) == ("messages", "tools", "last")
    scored = load_config(write(tmp_path, CONVERSATIONS + "eval:\n  metrics: [tool_calls, bleu]\n"))
    assert scored.eval.metrics == ["tool_calls", "bleu"]  # scored per assistant turn (evaluate/conversation.py)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("data:\n  prompt: '{x}'\n", "config.yaml: data.messages and data.prompt cannot be used together"),
        ("data:\n  label: y\n", "data.messages and data.label cannot be used together"),
        ("task: classification\n", "data.messages needs task causal_lm (got task classification)"),
        ("train:\n  objective: dpo\n", "data.messages trains with train.objective sft (got dpo)"),
        ("data:\n  tools: messages\n", "data.tools and data.messages name the same column"),
    ],
)
def test_conversation_config_errors_name_the_keys(tmp_path: Path, extra: str, message: str) -> None:
    raw = yaml.safe_load(CONVERSATIONS)
    for section, values in yaml.safe_load(extra).items():
        raw[section] = {**raw.get(section, {}), **values} if isinstance(values, dict) else values
    with pytest.raises(TunesmithError, match=re.escape(message)):
        load_config(write(tmp_path, yaml.safe_dump(raw)))


def test_tools_without_messages_and_loss_on_last_without_messages_are_errors(tmp_path: Path) -> None:
    with pytest.raises(TunesmithError, match="data.tools needs data.messages"):
        load_config(write(tmp_path, MINIMAL + "  tools: tools\n"))
    with pytest.raises(TunesmithError, match="data.loss_on last applies to conversations only"):
        load_config(write(tmp_path, MINIMAL + "  loss_on: last\n"))
