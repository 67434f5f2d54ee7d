"""kyb controller-manager's flags, spelled and parsed as kube-controller-manager's."""

import argparse

import pytest

from kybernetes.controllers import options


@pytest.mark.parametrize("text,seconds", [("40s", 40), ("1m30s", 90), ("500ms", 0.5),
                                          ("2h", 7200), ("1.5s", 1.5), ("3", 3)])
def test_go_durations(text, seconds):
    assert options.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "4x", "s", "10s5", "-"])
def test_bad_durations_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        options.parse_duration(text)


def test_flags_fill_the_options(monkeypatch):
    monkeypatch.setattr(options, "OPTIONS", options.ControllerOptions())
    p = argparse.ArgumentParser()
    options.add_arguments(p)
    options.configure(p.parse_args(["--cluster-cidr", "10.99.0.0/16", "--node-cidr-mask-size", "26",
                                    "--node-monitor-grace-period", "1m",
                                    "--terminated-pod-gc-threshold", "5"]))
    o = options.OPTIONS
    assert (o.cluster_cidr, o.node_cidr_mask_size, o.node_monitor_grace_period,
            o.node_startup_grace_period, o.terminated_pod_gc_threshold) == \
        ("10.99.0.0/16", 26, 60.0, 60.0, 5)
