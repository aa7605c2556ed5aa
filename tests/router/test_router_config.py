"""RouterConfig: YAML-facing validation."""

import json

import pytest

from router.config import RouterConfig


def test_from_dict_round_trips_and_is_json_serializable():
    config = RouterConfig.from_dict({"queue_penalty_tokens": 100, "imbalance_threshold": 2, "seed": 7})
    assert config.queue_penalty_tokens == 100.0 and isinstance(config.queue_penalty_tokens, float)
    assert RouterConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert RouterConfig.from_dict(None) == RouterConfig()


def test_unknown_key_is_named():
    with pytest.raises(ValueError, match="unknown key router.queue_penalty; valid keys: gpu_weight"):
        RouterConfig.from_dict({"queue_penalty": 1})


@pytest.mark.parametrize(
    "d, message",
    [
        ({"imbalance_threshold": 1.5}, "imbalance_threshold"),
        ({"seed": "x"}, "seed"),
        ({"gpu_weight": True}, "gpu_weight"),
        ({"host_weight": 2.0}, "gpu_weight >= host_weight"),
        ({"fallback": "round_robin"}, "power_of_two, least_loaded"),
        ({"queue_penalty_tokens": -1}, "queue_penalty_tokens"),
        ({"max_keys_per_replica": 0}, "max_keys_per_replica"),
    ],
)
def test_bad_values_raise_value_error(d, message):
    with pytest.raises(ValueError, match=message):
        RouterConfig.from_dict(d)
