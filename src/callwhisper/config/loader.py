"""Reading a configuration from YAML, with every problem located by file, line and path."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import ValidationError

from callwhisper.config.messages import translate
from callwhisper.config.yaml_document import (
    Document,
    Position,
    YamlSyntaxError,
    read_document,
)
from callwhisper.domain.configuration import Configuration, Location, format_location
from callwhisper.errors import ConfigError


def load_configuration_text(text: str, source: str = "<text>") -> Configuration:
    """Validate the YAML ``text`` as a Configuration.

    Raises ConfigError listing every problem, in the order of the text, as
    ``SOURCE:LINE: location: message``; a YAML syntax error is the only
    problem reported and reads ``SOURCE:LINE:COLUMN: invalid YAML: message``.
    """
    try:
        document = read_document(text, Configuration)
    except YamlSyntaxError as error:
        where = f"{source}:{error.position.line}:{error.position.column}"
        raise ConfigError([f"{where}: invalid YAML: {error.message}"]) from None
    problems: list[tuple[Position, Location, str]] = [
        (p.position, p.location, p.message) for p in document.problems
    ]
    configuration: Configuration | None = None
    if document.data is None:
        problems.append((Position(1, 1), (), "the file is empty"))
    elif not isinstance(document.data, dict):
        problems.append((document.position(()), (), "must be a mapping of sections"))
    else:
        configuration = _validate(document, problems)
    if problems:
        problems.sort(key=lambda problem: (problem[0].line, problem[0].column))
        raise ConfigError(
            [
                f"{source}:{position.line}: {format_location(location)}: {message}"
                for position, location, message in problems
            ]
        )
    assert configuration is not None
    return configuration


def validate_configuration(data: object) -> Configuration:
    """Validate plain data (already parsed) as a Configuration.

    Raises ConfigError listing every problem as ``location: message``, in the
    same wording as :func:`load_configuration_text`.
    """
    try:
        configuration = Configuration.model_validate(data)
    except ValidationError as error:
        problems = translate(error, Configuration, data)
    else:
        problems = configuration.reference_problems()
    if problems:
        raise ConfigError(
            [f"{format_location(location)}: {message}" for location, message in problems]
        )
    return configuration


def load_configuration_file(path: str | os.PathLike[str]) -> Configuration:
    """Validate the YAML file at ``path``; problems name the file as it was given."""
    source = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{source}: no such file"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{source}: is a directory, not a file"]) from None
    except UnicodeDecodeError as error:
        raise ConfigError([f"{source}: not UTF-8 text ({error.reason})"]) from None
    except OSError as error:
        raise ConfigError([f"{source}: cannot be read ({error.strerror})"]) from None
    return load_configuration_text(text, source)


def _validate(
    document: Document, problems: list[tuple[Position, Location, str]]
) -> Configuration | None:
    try:
        configuration = Configuration.model_validate(document.data)
    except ValidationError as error:
        # A value the YAML reader already complained about needs no second message.
        reported = {problem.location for problem in document.problems}
        for location, message in translate(error, Configuration, document.data):
            if any(location[: len(done)] == done for done in reported if done):
                continue
            position = (
                document.key_position(location)
                if message == "unknown field"
                else document.position(location)
            )
            problems.append((position, location, message))
        return None
    for location, message in configuration.reference_problems():
        problems.append((document.position(location), location, message))
    return None if problems else configuration
