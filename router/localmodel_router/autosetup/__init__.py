"""Automatic setup: a request for a model that does not exist yet but resolves becomes a LocalModel.

Off by default; an administrator switches it on (`--auto-setup` and friends, or a YAML file the Helm
chart mounts). A requested name resolves when it is

* a Hugging Face file path, `owner/repo/path/file.gguf` (also `huggingface://…` and `hf://…`), whose
  repository matches one of the allowed glob patterns; or
* a gallery entry, `name` or `gallery@name`, of an allowed gallery (LocalAI's index format, the
  operator's gallery code turns it into a manifest).

The router then creates one LocalModel in the configured namespace (`spec.name` is the requested name,
the file is a `download_files` entry, the backend follows the file type; labelled and annotated
`localmodel.dev/auto-created: "true"`; `minReplicas: 0` so an unused model goes back to zero), records
an Event on it naming the request, and holds the request like a cold start: bounded, then 503 with
`Retry-After`. Concurrent requests for the same model share one creation; the object name is derived
from the source, so several router replicas racing on the same model meet at one object (the losers
see 409 and wait for it). Anything that does not resolve stays `404 model_not_found`; a name that
resolves but is refused (allowlist, cap) gets 403 with the reason.
"""

from .holding import AutoSetup, Requester
from .resolution import AUTO_CREATED, SOURCE, Plan, hf_plan, object_name, parse_hf_path
from .settings import (
    CONFIG_ENV,
    AutoSetupConfigError,
    AutoSetupSettings,
    load_settings_file,
    settings_from_dict,
)
from .store import Exists, KubernetesModelStore, ModelStore

__all__ = [
    "AUTO_CREATED",
    "CONFIG_ENV",
    "SOURCE",
    "AutoSetup",
    "AutoSetupConfigError",
    "AutoSetupSettings",
    "Exists",
    "KubernetesModelStore",
    "ModelStore",
    "Plan",
    "Requester",
    "hf_plan",
    "load_settings_file",
    "object_name",
    "parse_hf_path",
    "settings_from_dict",
]
