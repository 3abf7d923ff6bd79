"""The one exception users see: a single line saying what, where and what to do."""


class DboothError(Exception):
    """A user-facing error. The CLI prints its message on one line and exits with code 2."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
