"""Media wire codecs, sans-I/O: G.711, RTP, RFC 4733 DTMF, SDP offer/answer and tones."""
