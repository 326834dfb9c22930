"""The one exception type for input a user can fix.

`UserError` says that something the user gave is wrong: an option, a path, a setting, or a file
that is damaged or of the wrong kind. `scl-ray` prints its message on one line and exits with
status 2; any other exception is a bug and shows its traceback. It is a ValueError, so library
callers that catch ValueError keep working. This module imports nothing of ours.
"""

from __future__ import annotations


class UserError(ValueError):
    """Input the user can fix; the message names it and says what was expected."""
