"""Where one step of a session collects its commands and timeline entries."""

from __future__ import annotations

from callwhisper.flow.commands import Command, Persist
from callwhisper.flow.record import CallRecord, Entry, EntryKind


class Outbox:
    """Commands of the current step, in order, with each timeline entry persisted in line.

    A timeline entry is folded into the record and emitted as
    :class:`~callwhisper.flow.commands.Persist` right where it happens, so the
    store sees each milestone before the commands that follow it.
    """

    def __init__(self, record: CallRecord) -> None:
        self.record = record
        self._commands: list[Command] = []
        self._last_play_id = 0

    def send(self, command: Command) -> None:
        """Queue ``command``."""
        self._commands.append(command)

    def note(self, at: float, kind: EntryKind, leg: str | None = None, **data: str) -> None:
        """Add a timeline entry at ``at``."""
        entry = Entry(at, kind, leg, data)
        self.record.apply(entry)
        self._commands.append(Persist(entry))

    def play_id(self) -> int:
        """A new playback id, unique within the call."""
        self._last_play_id += 1
        return self._last_play_id

    def drain(self) -> list[Command]:
        """The commands queued since the last drain."""
        commands, self._commands = self._commands, []
        return commands
