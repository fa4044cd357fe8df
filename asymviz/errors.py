"""The exceptions asymviz raises on bad input: each carries one line that names what is wrong."""


class AsymvizError(Exception):
    """Base class: a problem with the user's input, reported as one line (CLI: `error: ...`, exit 2)."""


class AdapterError(AsymvizError, ValueError):
    """An adapter file or folder that cannot be read as a LoRA adapter (names the file and the problem)."""


class ConfigError(AsymvizError, ValueError):
    """A configuration value that is out of range or inconsistent (names the field)."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type name when it has none.

    Every one-line report (the CLI's `error:` line, a run's `error` field, the app's messages) goes through this.
    """
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__
