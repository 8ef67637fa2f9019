"""The one exception for a client that went away, shared by the runtime's server and the router."""

from __future__ import annotations

from localmodel_runtime.errors import LocalModelException


class ClientGone(LocalModelException):
    """The client disconnected before its response started (while its request was still being read,
    or while the answer was being prepared): the ASGI edge catches it and sends nothing."""
