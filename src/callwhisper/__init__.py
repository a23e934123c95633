"""callwhisper: self-hostable pay-per-call routing with whispered, gated, cascading transfers."""

__version__ = "0.1.0"
