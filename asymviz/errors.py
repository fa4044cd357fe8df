"""The exceptions asymviz raises on bad input: each carries one line that names what is wrong."""


class AsymvizError(Exception):
    """Base class: a problem with the user's input, reported as one line (CLI: `error: ...`, exit 2)."""


class AdapterError(AsymvizError, ValueError):
    """An adapter file or folder that cannot be read as a LoRA adapter (names the file and the problem)."""


class ConfigError(AsymvizError, ValueError):
    """A configuration value that is out of range or inconsistent (names the field)."""


class MechanismError(AsymvizError):
    """A run store without what the mechanism test needs (its runs, an A&B adapter, a base model)."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type name when it has none.

    Every one-line report (the CLI's `error:` line, a run's `error` field, the app's messages) goes through this.
    """
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def display_name(name: object, limit: int = 120) -> str:
    """A file or member name as it may appear in a one-line message: control characters (a newline in a file
    name) escaped, and a name longer than `limit` characters shortened to its head and tail around '…'."""
    text = str(name)
    if len(text) <= limit and text.isprintable():  # the common case, in C (a 7B header has 448 names)
        return text
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        text = "".join(c if 32 <= ord(c) != 127 else repr(c)[1:-1] for c in text)
    if len(text) > limit:
        keep = (limit - 1) // 2
        text = f"{text[:keep]}…{text[-keep:]}"
    return text
