"""Link policy labels: parsed by LinkPolicy's field types, printed back, and rejected loudly."""

from __future__ import annotations

import pytest

from engine.segments import LinkPolicy
from engine.policy_label import canonical_label, parse_policy, policy_label, split_policy_list


@pytest.mark.parametrize("label, policy", [
    ("full", LinkPolicy("full")),
    ("naive", LinkPolicy("naive")),
    ("legolink:k=2", LinkPolicy("legolink", k=2)),
    ("legolink: k = 64", LinkPolicy("legolink", k=64)),
    ("cacheblend:ratio=0.15", LinkPolicy("cacheblend", ratio=0.15)),
    ("cacheblend:ratio=1", LinkPolicy("cacheblend", ratio=1.0)),
    ("legolink:k=8,ratio=0.5", LinkPolicy("legolink", k=8, ratio=0.5)),
])
def test_labels_parse_to_policies(label, policy):
    parsed = parse_policy(label)
    assert parsed == policy
    assert isinstance(parsed.k, int) and isinstance(parsed.ratio, float)


@pytest.mark.parametrize("policy", [LinkPolicy("full"), LinkPolicy("prefix"), LinkPolicy("legolink", k=32),
                                    LinkPolicy("legolink", k=16), LinkPolicy("cacheblend", ratio=0.5),
                                    LinkPolicy("cacheblend", k=3, ratio=0.0)])
def test_labels_round_trip(policy):
    assert parse_policy(policy_label(policy)) == policy
    assert parse_policy(policy_label(policy, ["k", "ratio"])) == policy


def test_label_forms():
    assert policy_label(LinkPolicy("legolink", k=32)) == "legolink:k=32"
    assert policy_label(LinkPolicy("legolink", k=16)) == "legolink"  # k=16 is the default
    assert policy_label(LinkPolicy("cacheblend", ratio=0.25), ["ratio"]) == "cacheblend:ratio=0.25"
    assert canonical_label(" legolink:k=016 ") == "legolink:k=16"
    assert canonical_label("cacheblend:ratio=.5,k=4") == "cacheblend:ratio=0.5,k=4"
    assert canonical_label("full") == "full"


def test_policy_lists_split_on_commas_between_labels():
    assert split_policy_list("full,naive,legolink:k=16,cacheblend:ratio=0.15") == [
        "full", "naive", "legolink:k=16", "cacheblend:ratio=0.15"]
    assert split_policy_list("full, legolink:k=8,ratio=0.5 ,naive") == ["full", "legolink:k=8,ratio=0.5", "naive"]
    with pytest.raises(ValueError, match="no policy name before it"):
        split_policy_list("k=3,full")


@pytest.mark.parametrize("label, message", [
    ("", "needs a name"),
    (":k=3", "needs a name"),
    ("lego", "unknown link policy 'lego'; valid: full, prefix, naive, legolink, cacheblend"),
    ("legolink:k", "'k' in 'legolink:k' is not a field=value pair"),
    ("legolink:=3", "is not a field=value pair"),
    ("legolink:depth=3", "LinkPolicy has no field 'depth'; valid: k, ratio"),
    ("legolink:name=full", "the policy name goes before the ':'"),
    ("legolink:k=2,k=3", "field 'k' is given twice"),
    ("legolink:k=1.5", "k must be an int, got '1.5'"),
    ("cacheblend:ratio=lots", "ratio must be a float, got 'lots'"),
    ("legolink:k=-1", "k must be an integer >= 0"),
    ("cacheblend:ratio=2", r"ratio must be a number in \[0, 1\]"),
])
def test_bad_labels_are_rejected(label, message):
    with pytest.raises(ValueError, match=message):
        parse_policy(label)
