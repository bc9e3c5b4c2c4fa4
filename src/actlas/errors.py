"""The one error type for problems the user can fix: bad input, a bad config, a missing file.

The CLI prints a ``UserError`` as one line (its message names the cause and the fix); any other
exception is a bug in actlas and keeps its traceback. Subclass it per area (``ModelError``,
``LayerError``, ``StoreError``, ...) so callers can catch what they expect.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, config or files; the message says how to fix it, in one line."""
