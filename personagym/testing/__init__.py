"""Test and dry-run helpers. `FakeServer` is imported lazily, so `python -m
personagym.testing.fake_server` does not find its own module already imported."""


def __getattr__(name: str):
    if name == "FakeServer":
        from personagym.testing.fake_server import FakeServer

        return FakeServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
