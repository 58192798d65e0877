"""The one exception type the tooling raises for user-facing failures."""


class SeriesError(Exception):
    """A failure the user can act on; the message says what went wrong and what to do."""
