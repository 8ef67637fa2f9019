"""The runtime token's children: the model's Secret and the runtime container's variable that reads it.

With a release key configured (`runtimeKeyFile`), each LocalModel gets the Secret `<name>-runtime-token`
holding HMAC(key, namespace/name) (localmodel_runtime.resource.runtime_token), and its runtime reads it
into `LOCALMODEL_RUNTIME_TOKEN`, last in the environment so that a model's own `env` cannot replace it.
Pure: manifests in, manifests out.
"""

from __future__ import annotations

import base64
import copy
from typing import Any

from localmodel_runtime.resource.runtime_token import SECRET_KEY, TOKEN_ENV, secret_name

from .builders import Model

Manifest = dict[str, Any]


def build_token_secret(model: Model, token: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": model.metadata(secret_name(model.name)),
        "type": "Opaque",
        "data": {SECRET_KEY: base64.b64encode(token.encode()).decode()},
    }


def with_token(deployment: Manifest, model: Model) -> Manifest:
    """`deployment` whose runtime container reads the model's token from its Secret."""
    result = copy.deepcopy(deployment)
    for container in result["spec"]["template"]["spec"]["containers"]:
        if container["name"] == "runtime":
            env = [e for e in container.get("env") or [] if e.get("name") != TOKEN_ENV]
            ref = {"name": secret_name(model.name), "key": SECRET_KEY}
            container["env"] = [*env, {"name": TOKEN_ENV, "valueFrom": {"secretKeyRef": ref}}]
    return result
