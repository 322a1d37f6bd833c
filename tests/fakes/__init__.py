"""In-memory fakes of every port the use cases depend on (`application.ports`), and `FakeContext`,
which bundles them: the fast tier of use-case tests runs on these, without AWS or moto."""

from tests.fakes.context import FakeContext, FakeProvider

__all__ = ["FakeContext", "FakeProvider"]
