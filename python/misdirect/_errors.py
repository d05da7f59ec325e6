"""The one exception misdirect's Python API raises for what went wrong around the server."""


class MisdirectError(Exception):
    """The server could not start (an invalid scenario, a port in use, no Docker engine…),
    or the control API refused a request. The message names the scenario and carries the
    server's own words."""
