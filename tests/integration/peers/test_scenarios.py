"""Every SIPp scenario file is well-formed and loads in the real SIPp."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import get_args

import pytest

from callwhisper.media.dtmf import DigitEnded, DtmfReceiver
from callwhisper.media.rtp import RtpPacket
from tests.integration.peers.net import LOOPBACK
from tests.integration.peers.sipp import (
    SCENARIO_DIR,
    ScenarioName,
    SippExit,
    SippLauncher,
    SippOptions,
    prepare_pcap_dir,
    scenario_names,
)
from tests.unit.media.pcap import read_udp

pytestmark = pytest.mark.integration

ALL = sorted(get_args(ScenarioName))


def test_the_scenario_names_type_lists_exactly_the_files() -> None:
    assert scenario_names() == ALL


@pytest.mark.parametrize("name", ALL)
def test_scenario_is_named_after_its_file(name: str) -> None:
    root = ElementTree.parse(SCENARIO_DIR / f"{name}.xml").getroot()
    assert root.tag == "scenario"
    assert root.get("name") == name


def test_sipp_loads_every_scenario(sipp: SippLauncher) -> None:
    """SIPp parses each file and its pcaps, then idles until its timeout (exit 97)."""
    # -r 0 places no call, so a UAC needs no peer; a UAS just waits.
    idle = SippOptions(rate=0, timeout=1, timeout_error=False)
    peers = [
        sipp.uac(name, (LOOPBACK, 9), idle) if name.startswith("caller") else sipp.uas(name, idle)
        for name in ALL
    ]
    for peer in peers:
        result = peer.wait()
        assert result.exit_status is SippExit.INTERNAL_COMMAND, result.describe()
        assert result.errors == (), result.describe()


def test_the_renumbered_key_1_follows_every_shipped_key(tmp_path: Path) -> None:
    """SIPp's key 1 is numbered before key 5; the harness's copy comes after it."""
    prepare_pcap_dir(tmp_path / "pcap")
    five, one = (
        [RtpPacket.parse(d.payload) for d in read_udp(tmp_path / "pcap" / name) if d.payload]
        for name in ("dtmf_2833_5.pcap", "dtmf_2833_1_renumbered.pcap")
    )
    receiver = DtmfReceiver()
    digits = [
        event.digit
        for time, packet in enumerate([*five, *one])
        for event in receiver.receive(packet, float(time))
        if isinstance(event, DigitEnded)
    ]
    assert digits == ["5", "1"]
    assert one[0].ssrc == five[0].ssrc
