"""The SIP protocol core, sans-I/O (RFC 3261).

Nothing in this package reads a clock, opens a socket or touches the event
loop: bytes and ``now`` go in, messages, events, bytes to send and timer
deadlines come out.

- :mod:`.headers`: URIs, name-addr, Via, CSeq and parameters.
- :mod:`.message`: parsing, serialization, stream framing and builders.
- :mod:`.transaction`: the four transaction machines and the transaction layer.
- :mod:`.dialog`: dialogs and in-dialog requests.
- :mod:`.auth`: digest authentication for the requests we send.
- :mod:`.timers`: T1, T2, T4 and the timers derived from them.
"""
