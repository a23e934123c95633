"""Whispers checked and heard before a call is sold: linter, preview, spoken variables.

- :mod:`~callwhisper.whisper.variables`: call variables in their spoken form;
- :mod:`~callwhisper.whisper.sample`: a sample call and the whisper a target hears;
- :mod:`~callwhisper.whisper.render`: a whisper rendered to text and audio;
- :mod:`~callwhisper.whisper.lint`: the rules a whisper is checked against.
"""

from callwhisper.whisper.lint import (
    LintContext,
    LintFinding,
    Severity,
    known_variables,
    lint_configuration,
    lint_whisper,
    parse_template,
)
from callwhisper.whisper.render import (
    CachedSpeaker,
    RenderedWhisper,
    Speaker,
    render_whisper,
    tts_options,
    whisper_text,
)
from callwhisper.whisper.sample import (
    SAMPLE_CALLER,
    routed_targets,
    sample_attributes,
    sample_variables,
)
from callwhisper.whisper.variables import builtin_variables, speak_value, spoken_variables

__all__ = [
    "SAMPLE_CALLER",
    "CachedSpeaker",
    "LintContext",
    "LintFinding",
    "RenderedWhisper",
    "Severity",
    "Speaker",
    "builtin_variables",
    "known_variables",
    "lint_configuration",
    "lint_whisper",
    "parse_template",
    "render_whisper",
    "routed_targets",
    "sample_attributes",
    "sample_variables",
    "speak_value",
    "spoken_variables",
    "tts_options",
    "whisper_text",
]
