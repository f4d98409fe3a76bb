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


class InvalidParameter(UserError):
    """A parameter of the library with a value it refuses. The message names the parameter as the
    Python API spells it (`questions_per_task`); the CLI shows the flag instead (`--questions-per-task`)."""

    def __init__(self, param: str, problem: str):
        super().__init__(f"{param} {problem}")
        self.param = param
        self.problem = problem
