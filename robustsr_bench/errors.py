"""The one exception type users see.

Every mistake a user can make (a bad config value, a broken image, a missing weight file) is raised
as :class:`UserError` with a single line that names the file, field or value and says what would be
valid. The CLI prints that line and exits with :attr:`UserError.exit_code`; anything else is a bug
and keeps its traceback.
"""


class UserError(Exception):
    """A problem the user can fix; its message is one line."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split("\n")))


class ConfigError(UserError):
    """Invalid configuration: unknown key, wrong type, unknown name."""


class DataError(UserError):
    """Invalid or unreadable data: image files, folders, layouts."""


class MissingWeightsError(UserError):
    """A pretrained file a run needs is not in the cache."""


class NothingToReport(UserError):
    """``report`` found no finished record to show: exit 1 (like ``--check`` finding a
    difference), and nothing written, so committed results are never replaced with less."""

    exit_code = 1
