"""A reporter that keeps what the library tells the user, for tests to read."""

from dbooth.util.reporting import Reporter


class Recorder(Reporter):
    def __init__(self):
        self.infos: list[str] = []
        self.warnings: list[str] = []

    def info(self, message: str) -> None:
        self.infos.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
