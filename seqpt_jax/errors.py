"""The one exception type for user mistakes.

A `UserError` carries a single line that names the problem and the fix. The CLI prints it
and exits with code 2; library callers can catch it. Anything else is a bug and keeps its
traceback.
"""


class UserError(ValueError):
    """A mistake the user can fix: bad config, missing file, wrong shapes."""

    exit_code = 2
