"""Captured-looking SIP messages: a caller's INVITE through a carrier, and the rest of the call."""

from __future__ import annotations

SDP_OFFER = (
    b"v=0\r\n"
    b"o=- 3918201 3918201 IN IP4 203.0.113.10\r\n"
    b"s=-\r\n"
    b"c=IN IP4 203.0.113.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 18540 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
)

SDP_ANSWER = (
    b"v=0\r\n"
    b"o=callwhisper 1 1 IN IP4 198.51.100.5\r\n"
    b"s=callwhisper\r\n"
    b"c=IN IP4 198.51.100.5\r\n"
    b"t=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=sendrecv\r\n"
)

INVITE = (
    b"INVITE sip:+18005550100@198.51.100.5:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK-524287-1---a1b2c3d4e5f6;rport\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.44:5060;received=192.0.2.44;branch=z9hG4bK3e7a91\r\n"
    b"Max-Forwards: 69\r\n"
    b"Record-Route: <sip:203.0.113.10;lr;ftag=as58f4a1>\r\n"
    b'From: "WIRELESS CALLER" <sip:+13125550143@203.0.113.10>;tag=as58f4a1\r\n'
    b"To: <sip:+18005550100@198.51.100.5>\r\n"
    b"Call-ID: 6d1c0f3b2a9e4c7d@203.0.113.10\r\n"
    b"CSeq: 102 INVITE\r\n"
    b"Contact: <sip:+13125550143@203.0.113.10:5060;transport=udp>\r\n"
    b"Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY\r\n"
    b"Supported: replaces, timer\r\n"
    b"User-Agent: Carrier-SBC 4.2\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 232\r\n"
    b"\r\n" + SDP_OFFER
)

# The same INVITE as a terse UA writes it: compact names, odd case, a folded
# header and two Vias on one line.
INVITE_COMPACT = (
    b"INVITE sip:+18005550100@198.51.100.5 SIP/2.0\r\n"
    b"v: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bKc0ffee01,\r\n"
    b" SIP/2.0/TCP 192.0.2.44;branch=z9hG4bK99\r\n"
    b"max-forwards: 70\r\n"
    b"f: <sip:+13125550143@203.0.113.10>;tag=77aa\r\n"
    b"t: sip:+18005550100@198.51.100.5\r\n"
    b"i: compact-1@203.0.113.10\r\n"
    b"CSEQ: 1 INVITE\r\n"
    b"m: <sip:caller@203.0.113.10>\r\n"
    b"Subject: lead\r\n"
    b"  from web form\r\n"
    b"c: application/sdp\r\n"
    b"l: 232\r\n"
    b"\r\n" + SDP_OFFER
)

RINGING = (
    b"SIP/2.0 180 Ringing\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.5:5060;branch=z9hG4bKb0b0b0;rport=5060\r\n"
    b"From: <sip:+18005550100@198.51.100.5>;tag=cw1\r\n"
    b"To: <sip:agent@buyer.example.com>;tag=1928301774\r\n"
    b"Call-ID: leg-b-1@198.51.100.5\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:agent@192.0.2.80:5060>\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

OK_INVITE = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.5:5060;branch=z9hG4bKb0b0b0;rport=5060\r\n"
    b"Record-Route: <sip:proxy2.buyer.example.com;lr>\r\n"
    b"Record-Route: <sip:proxy1.buyer.example.com;lr>\r\n"
    b"From: <sip:+18005550100@198.51.100.5>;tag=cw1\r\n"
    b"To: <sip:agent@buyer.example.com>;tag=1928301774\r\n"
    b"Call-ID: leg-b-1@198.51.100.5\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:agent@192.0.2.80:5060>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 204\r\n"
    b"\r\n" + SDP_ANSWER
)

ACK = (
    b"ACK sip:+18005550100@198.51.100.5:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK-524287-1---ack01;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "WIRELESS CALLER" <sip:+13125550143@203.0.113.10>;tag=as58f4a1\r\n'
    b"To: <sip:+18005550100@198.51.100.5>;tag=cw-a-1\r\n"
    b"Call-ID: 6d1c0f3b2a9e4c7d@203.0.113.10\r\n"
    b"CSeq: 102 ACK\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

BYE = (
    b"BYE sip:+18005550100@198.51.100.5:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK-524287-1---bye01;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "WIRELESS CALLER" <sip:+13125550143@203.0.113.10>;tag=as58f4a1\r\n'
    b"To: <sip:+18005550100@198.51.100.5>;tag=cw-a-1\r\n"
    b"Call-ID: 6d1c0f3b2a9e4c7d@203.0.113.10\r\n"
    b"CSeq: 103 BYE\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

CANCEL = (
    b"CANCEL sip:+18005550100@198.51.100.5:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK-524287-1---a1b2c3d4e5f6;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "WIRELESS CALLER" <sip:+13125550143@203.0.113.10>;tag=as58f4a1\r\n'
    b"To: <sip:+18005550100@198.51.100.5>\r\n"
    b"Call-ID: 6d1c0f3b2a9e4c7d@203.0.113.10\r\n"
    b"CSeq: 102 CANCEL\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

TERMINATED_487 = (
    b"SIP/2.0 487 Request Terminated\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.5:5060;branch=z9hG4bKb0b0b0;rport=5060\r\n"
    b"From: <sip:+18005550100@198.51.100.5>;tag=cw1\r\n"
    b"To: <sip:agent@buyer.example.com>;tag=1928301774\r\n"
    b"Call-ID: leg-b-1@198.51.100.5\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

REGISTER = (
    b"REGISTER sip:registrar.trunk.example.net SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP [2001:db8::5]:5060;branch=z9hG4bKnashds7\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:callwhisper@trunk.example.net>;tag=a73kszlfl\r\n"
    b"To: <sip:callwhisper@trunk.example.net>\r\n"
    b"Call-ID: 1j9FpLxk3uxtm8tn@2001:db8::5\r\n"
    b"CSeq: 1 REGISTER\r\n"
    b"Contact: <sip:callwhisper@[2001:db8::5]:5060;transport=tcp>;expires=3600\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

UNAUTHORIZED = (
    b"SIP/2.0 401 Unauthorized\r\n"
    b"Via: SIP/2.0/TCP [2001:db8::5]:5060;branch=z9hG4bKnashds7;received=2001:db8::5\r\n"
    b"From: <sip:callwhisper@trunk.example.net>;tag=a73kszlfl\r\n"
    b"To: <sip:callwhisper@trunk.example.net>;tag=1410948204\r\n"
    b"Call-ID: 1j9FpLxk3uxtm8tn@2001:db8::5\r\n"
    b"CSeq: 1 REGISTER\r\n"
    b'WWW-Authenticate: Digest realm="trunk.example.net", nonce="ea9c8e88df84f1cec4341ae6cbe5a359",'
    b' algorithm=SHA-256, qop="auth", opaque="5ccc069c403ebaf9f0171e9517f40e41"\r\n'
    b'WWW-Authenticate: Digest realm="trunk.example.net", nonce="ea9c8e88df84f1cec4341ae6cbe5a359",'
    b' algorithm=MD5, qop="auth", opaque="5ccc069c403ebaf9f0171e9517f40e41"\r\n'
    b"Content-Length: 0\r\n"
    b"\r\n"
)

# Every captured message above, for tests that run over all of them.
MESSAGES = [
    INVITE,
    INVITE_COMPACT,
    RINGING,
    OK_INVITE,
    ACK,
    BYE,
    CANCEL,
    TERMINATED_487,
    REGISTER,
    UNAUTHORIZED,
]
