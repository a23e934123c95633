"""Configuration as code: YAML in and out, with located, friendly problems.

- :func:`load_configuration_text` / :func:`load_configuration_file` read and
  validate YAML, raising :class:`~callwhisper.errors.ConfigError` whose
  problems read ``FILE:LINE: location: message``;
- :func:`validate_configuration` does the same for data already parsed;
- :func:`dump_configuration` writes a configuration back as YAML that loads
  to an equal configuration;
- ``python -m callwhisper.config.reference`` prints the field reference of
  ``docs/configuration.md``.
"""

from callwhisper.config.dump import dump_configuration
from callwhisper.config.loader import (
    load_configuration_file,
    load_configuration_text,
    validate_configuration,
)

__all__ = [
    "dump_configuration",
    "load_configuration_file",
    "load_configuration_text",
    "validate_configuration",
]
