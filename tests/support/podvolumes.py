"""Materialise a pod's volumes as host directories, for the process node.

Processes cannot mount volumes the way a kubelet does, so each volume becomes a directory
(ConfigMap / Secret / projected keys written as files, emptyDir empty, a PVC's directory
persisting under the node's dir), which the pod's processes then see at their `mountPath`
through bind mounts in a private mount namespace (see podrunner.py).
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path
from typing import Any

from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.models.authentication_v1 import BoundObjectReference, TokenRequestSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Secret, ServiceAccountToken

JsonDict = dict[str, Any]


class VolumeError(RuntimeError):
    """A volume cannot be prepared (yet): the pod stays in ContainerCreating."""


def _write_keys(target: Path, data: dict[str, bytes], items: list[JsonDict] | None, mode: int) -> None:
    target.mkdir(parents=True, exist_ok=True)
    selected: list[tuple[str, str, int]] = (
        [(str(i["key"]), str(i.get("path", i["key"])), int(i.get("mode", mode))) for i in items]
        if items
        else [(k, k, mode) for k in data]
    )
    for key, rel, file_mode in selected:
        if key not in data:
            raise VolumeError(f"key {key!r} not found")
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data[key])
        path.chmod(file_mode)


def _configmap_data(client: Client, ns: str, name: str) -> dict[str, bytes]:
    cm = client.get(ConfigMap, name, namespace=ns)
    out = {k: v.encode() for k, v in (cm.data or {}).items()}
    out.update({k: base64.b64decode(v) for k, v in (cm.binaryData or {}).items()})
    return out


def _secret_data(client: Client, ns: str, name: str) -> dict[str, bytes]:
    sec = client.get(Secret, name, namespace=ns)
    out = {k: base64.b64decode(v) for k, v in (sec.data or {}).items()}
    out.update({k: v.encode() for k, v in (sec.stringData or {}).items()})
    return out


def _optional_get(fn: Any, client: Client, ns: str, name: str, optional: bool) -> dict[str, bytes] | None:
    try:
        data: dict[str, bytes] = fn(client, ns, name)
        return data
    except ApiError as e:
        if e.status.code == 404 and optional:
            return None
        raise VolumeError(f"{name}: {e.status.message}") from e


def _service_account_token(client: Client, pod: JsonDict, source: JsonDict) -> bytes:
    """A bound token from the TokenRequest API, as the kubelet would fetch for the pod."""
    meta = pod["metadata"]
    spec = TokenRequestSpec(
        audiences=[source["audience"]] if source.get("audience") else None,
        expirationSeconds=source.get("expirationSeconds", 3607),
        boundObjectRef=BoundObjectReference(apiVersion="v1", kind="Pod", name=meta["name"], uid=meta["uid"]),
    )
    sa = pod["spec"].get("serviceAccountName") or "default"
    req = ServiceAccountToken(metadata=ObjectMeta(name=sa, namespace=meta["namespace"]), spec=spec)
    res = client.create(req, sa, namespace=meta["namespace"])
    assert res.status is not None
    return str(res.status.token).encode()


def _projected(client: Client, pod: JsonDict, vol: JsonDict, target: Path) -> None:
    ns = pod["metadata"]["namespace"]
    mode = vol.get("defaultMode", 0o644)
    for src in vol.get("sources", []):
        if "configMap" in src:
            data = _optional_get(
                _configmap_data, client, ns, src["configMap"]["name"], src["configMap"].get("optional", False)
            )
            if data is not None:
                _write_keys(target, data, src["configMap"].get("items"), mode)
        elif "secret" in src:
            data = _optional_get(
                _secret_data, client, ns, src["secret"]["name"], src["secret"].get("optional", False)
            )
            if data is not None:
                _write_keys(target, data, src["secret"].get("items"), mode)
        elif "serviceAccountToken" in src:
            sat = src["serviceAccountToken"]
            _write_keys(target, {sat["path"]: _service_account_token(client, pod, sat)}, None, mode)
        elif "downwardAPI" in src:
            _downward(pod, src["downwardAPI"].get("items", []), target, mode)


def _downward(pod: JsonDict, items: list[JsonDict], target: Path, mode: int) -> None:
    meta = pod["metadata"]
    values = {
        "metadata.namespace": meta["namespace"],
        "metadata.name": meta["name"],
        "metadata.uid": meta["uid"],
    }
    data = {}
    for item in items:
        field = item.get("fieldRef", {}).get("fieldPath", "")
        data[item["path"]] = values.get(field, "").encode()
    _write_keys(target, data, None, mode)


def prepare_volumes(client: Client, pod: JsonDict, pod_dir: Path, pvc_root: Path) -> dict[str, Path]:
    """Return volume name -> host directory; raise VolumeError while something is missing."""
    ns = pod["metadata"]["namespace"]
    paths: dict[str, Path] = {}
    for vol in pod["spec"].get("volumes") or []:
        name, target = vol["name"], pod_dir / "volumes" / vol["name"]
        if target.exists() and "persistentVolumeClaim" not in vol and "hostPath" not in vol:
            shutil.rmtree(target)  # a retry after a VolumeError: start clean
        if "configMap" in vol:
            src = vol["configMap"]
            data = _optional_get(_configmap_data, client, ns, src["name"], src.get("optional", False))
            _write_keys(target, data or {}, src.get("items") if data else None, src.get("defaultMode", 0o644))
        elif "secret" in vol:
            src = vol["secret"]
            data = _optional_get(_secret_data, client, ns, src["secretName"], src.get("optional", False))
            _write_keys(target, data or {}, src.get("items") if data else None, src.get("defaultMode", 0o644))
        elif "emptyDir" in vol:
            target.mkdir(parents=True, exist_ok=True)
        elif "persistentVolumeClaim" in vol:
            # One directory per claim, kept across pods like a real volume.
            target = pvc_root / ns / vol["persistentVolumeClaim"]["claimName"]
            target.mkdir(parents=True, exist_ok=True)
        elif "hostPath" in vol:
            target = Path(vol["hostPath"]["path"])
            if vol["hostPath"].get("type") in ("DirectoryOrCreate", None, ""):
                target.mkdir(parents=True, exist_ok=True)
        elif "projected" in vol:
            target.mkdir(parents=True, exist_ok=True)
            _projected(client, pod, vol["projected"], target)
        elif "downwardAPI" in vol:
            _downward(
                pod, vol["downwardAPI"].get("items", []), target, vol["downwardAPI"].get("defaultMode", 0o644)
            )
        else:
            target.mkdir(parents=True, exist_ok=True)  # unsupported type: an empty directory
        paths[name] = target
    return paths
