"""The root of the operator's exceptions. One tree; each class lives beside the code that raises it:

    OperatorException
    ├── KubeError          an API request failed (kube.py)
    │   └── NotFound           the object is not there (404)
    ├── RetryLater         the children cannot be written yet: reconcile again later (reconcile.py)
    ├── PlacementError     the spec cannot be placed; `reason` is the condition reason (placement.py)
    ├── PolicyError        a malformed tenantPolicy (policy.py; a ValueError)
    ├── SettingsError      an unusable operator configuration (settings.py; a ValueError)
    └── CLIError           a `localmodel` command-line error, one line (cli.py)

What a user wrote wrong in a LocalModel is not an exception here: it becomes a `Degraded` condition and
an Event (status.py), from the runtime's ModelConfigError and the errors above.
"""

from __future__ import annotations


class OperatorException(Exception):
    """The root of the operator's exceptions."""
