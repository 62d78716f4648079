"""The one error a reader raises for a file it cannot use.

It names the file, what is wrong and what was expected, because after a cluster job the log line is
all the user has; and it pickles, because it is raised inside Ray tasks and re-raised on the driver.
"""

from __future__ import annotations


class BadInputError(ValueError):
    """A corrupt, truncated or foreign input file."""

    def __init__(self, path: str, problem: str, expected: str) -> None:
        self.path = str(path)
        self.problem = problem
        self.expected = expected
        super().__init__(f"{self.path}: {problem} (expected {expected})")

    def __reduce__(self):
        return (type(self), (self.path, self.problem, self.expected))
