"""What a test reads off the log it captured."""

from __future__ import annotations

import pytest


def only_error(caplog: pytest.LogCaptureFixture, error: type[BaseException]) -> str:
    """The message of the one record captured, which must carry an ``error``; fails otherwise."""
    [record] = caplog.records
    assert record.exc_info is not None, record.getMessage()
    assert isinstance(record.exc_info[1], error), record.exc_info[1]
    return record.getMessage()
