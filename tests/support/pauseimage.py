"""The pod sandbox ("pause") image for the real node, made here from the static `pause` binary.

Why by hand: the upstream pause image cannot be pulled on the project's machines, and a one-file image
needs no builder. `write_oci_archive` writes an OCI image layout tarball (one layer holding `/pause`)
that `ctr images import` reads; the index entry carries containerd's image-name annotation, so the
image gets the name containerd's `pinned_images.sandbox` refers to.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

PAUSE_IMAGE = "localmodel.test/pause:1"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))


def _blob(tar: tarfile.TarFile, data: bytes, media_type: str) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    _add(tar, f"blobs/sha256/{digest}", data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def write_oci_archive(binary: Path, archive: Path, name: str = PAUSE_IMAGE) -> Path:
    layer_buffer = io.BytesIO()
    # Uncompressed layer: its digest is also its diff ID, and a 1.4 MB layer gains nothing from gzip.
    with tarfile.open(fileobj=layer_buffer, mode="w") as layer:
        _add(layer, "pause", binary.read_bytes(), mode=0o755)
    layer_bytes = layer_buffer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    with tarfile.open(archive, mode="w") as tar:
        layer_desc = _blob(tar, layer_bytes, "application/vnd.oci.image.layer.v1.tar")
        config_desc = _blob(tar, json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": config_desc,
            "layers": [layer_desc],
        }
        manifest_desc = _blob(tar, json.dumps(manifest).encode(), MANIFEST_TYPE)
        manifest_desc["annotations"] = {
            "io.containerd.image.name": name,
            "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1],
        }
        index: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [manifest_desc],
        }
        _add(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        _add(tar, "index.json", json.dumps(index).encode())
    return archive
