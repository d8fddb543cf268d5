"""Mode resolution: explicit argument > LABKIT_MODE > auto, decided per component."""

import pytest

from labkit.runtime import modes
from labkit.runtime.probes import DmrProbe, SbxProbe

pytestmark = pytest.mark.fast

NO_DMR = DmrProbe(12434, answering=False, detail="nothing answers")
REAL_DMR = DmrProbe(12434, answering=True, embedded=False, models=["ai/smollm2"])
OUR_DMR = DmrProbe(12434, answering=True, embedded=True)
NO_SBX = SbxProbe(False, detail="sbx is not on PATH")
SBX_UNINIT = SbxProbe(True, "v0.42.1", False, "sbx policy is not initialised")
SBX_READY = SbxProbe(True, "v0.42.1", True, "sbx v0.42.1")


def test_requested_mode_precedence():
    assert modes.requested_mode(None, {}) == ("auto", "default")
    assert modes.requested_mode(None, {"LABKIT_MODE": "Live"}) == ("live", "LABKIT_MODE")
    assert modes.requested_mode("embedded", {"LABKIT_MODE": "live"}) == ("embedded", "argument")


def test_unknown_mode_is_a_clear_error():
    with pytest.raises(modes.ModeError, match="use one of: live, embedded, auto"):
        modes.requested_mode("cloud", {})
    with pytest.raises(modes.ModeError, match="LABKIT_MODE"):
        modes.requested_mode(None, {"LABKIT_MODE": "x"})


def test_auto_without_tools_is_embedded():
    res = modes.resolve(None, dmr=NO_DMR, sbx=NO_SBX, env={})
    assert res.label == "embedded" and res.runnable
    assert "no Docker Model Runner" in res.model_server.reason
    assert "not on PATH" in res.sandboxes.reason


def test_auto_with_everything_real_is_live():
    res = modes.resolve(None, dmr=REAL_DMR, sbx=SBX_READY, env={})
    assert res.label == "live" and res.runnable


def test_auto_mix_real_dmr_embedded_sandboxes():
    res = modes.resolve(None, dmr=REAL_DMR, sbx=NO_SBX, env={})
    assert (res.model_server.kind, res.sandboxes.kind, res.label) == ("live", "embedded", "mixed")


def test_auto_uninitialised_sbx_falls_back_and_says_why():
    res = modes.resolve(None, dmr=NO_DMR, sbx=SBX_UNINIT, env={})
    assert res.sandboxes.kind == "embedded"
    assert "not initialised" in res.sandboxes.reason


def test_our_own_server_is_not_mistaken_for_dmr():
    res = modes.resolve(None, dmr=OUR_DMR, sbx=NO_SBX, env={})
    assert res.model_server.kind == "embedded"
    assert "labkit" in res.model_server.reason


def test_forced_live_without_tools_is_not_runnable():
    res = modes.resolve("live", dmr=NO_DMR, sbx=NO_SBX, env={})
    assert res.label == "live" and not res.runnable
    assert not res.model_server.available and not res.sandboxes.available


def test_forced_embedded_with_real_dmr_on_port_is_not_runnable():
    res = modes.resolve(None, dmr=REAL_DMR, sbx=NO_SBX, env={"LABKIT_MODE": "embedded"})
    assert res.source == "LABKIT_MODE"
    assert not res.model_server.available
    assert "LABKIT_DMR_PORT" in res.model_server.reason


def test_describe_names_both_components():
    text = modes.resolve(None, dmr=NO_DMR, sbx=NO_SBX, env={}).describe()
    assert "model server: embedded" in text and "sandboxes: embedded" in text
