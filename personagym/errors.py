"""The few exception types a user ever sees.

A `UserError` is bad input: the CLI prints its message as one line and exits with code 2. Its
message always says what is wrong *and* how to fix it, because the user cannot see our code.
"""

from __future__ import annotations


class PersonaGymError(Exception):
    """Base class for everything personagym raises on purpose."""


class UserError(PersonaGymError):
    """Bad input from the user (flags, files, model specs, missing keys). CLI exit code 2."""

    exit_code = 2


class ConfigError(UserError):
    """A model spec, key, base URL or config file that cannot work."""
