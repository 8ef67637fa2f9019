"""Turn a pod's container spec into a local process: argv, environment, mounts, probes.

Pure helpers for podrunner.py (the process node's per-pod worker). Images do not exist here:
an image maps to a local program (`ImageMap`), and the container's command/args run with that
program in place of argv[0], as the image's entrypoint would.
"""

from __future__ import annotations

import base64
import fnmatch
import re
import shlex
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import ConfigMap, Secret

JsonDict = dict[str, Any]
_SUPPORT = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ImageRule:
    pattern: str  # fnmatch pattern over the full image reference
    argv: tuple[str, ...]  # replaces the container's argv[0]


def default_image_map() -> list[ImageRule]:
    """The runtime image runs the venv's `localmodel-runtime`; test images run podprog.py."""
    venv_bin = Path(sys.executable).parent
    return [
        ImageRule("*localmodel*runtime*", (str(venv_bin / "localmodel-runtime"),)),
        # The operator image holds two programs (the chart's command picks one): a directory.
        ImageRule("*localmodel*operator*", (str(venv_bin),)),
        ImageRule("localmodel.test/podprog*", (sys.executable, str(_SUPPORT / "podprog.py"))),
        ImageRule("localmodel.test/httpserver*", (sys.executable, str(_SUPPORT / "podprog.py"), "serve")),
    ]


def resolve_image(rules: list[ImageRule], image: str) -> tuple[str, ...] | None:
    for rule in rules:
        if fnmatch.fnmatchcase(image, rule.pattern):
            return rule.argv
    return None


class ConfigError(RuntimeError):
    """What the kubelet reports as CreateContainerConfigError (a missing key, Secret...)."""


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined names expand, `$$` escapes, others stay."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR_REF.sub(sub, text)


def build_argv(mapped: tuple[str, ...], container: JsonDict, env: dict[str, str]) -> list[str]:
    command = [expand(c, env) for c in container.get("command") or []]
    args = [expand(a, env) for a in container.get("args") or []]
    if command and len(mapped) == 1 and Path(mapped[0]).is_dir():
        # A directory stands for the image's PATH: the command names the program in it.
        return [str(Path(mapped[0]) / Path(command[0]).name), *command[1:], *args]
    # With a command, its argv[0] is the image's program; without, the entrypoint gets args.
    return [*mapped, *command[1:], *args] if command else [*mapped, *args]


def _key_ref(client: Client, kind: str, ns: str, ref: JsonDict) -> str | None:
    try:
        if kind == "secret":
            obj = client.get(Secret, ref["name"], namespace=ns)
            raw = (obj.data or {}).get(ref["key"])
            value = base64.b64decode(raw).decode() if raw is not None else None
        else:
            cm = client.get(ConfigMap, ref["name"], namespace=ns)
            value = (cm.data or {}).get(ref["key"])
    except ApiError as e:
        if e.status.code == 404 and ref.get("optional"):
            return None
        raise ConfigError(f"{kind} {ref['name']!r}: {e.status.message}") from e
    if value is None and not ref.get("optional"):
        raise ConfigError(f"couldn't find key {ref['key']} in {kind} {ns}/{ref['name']}")
    return value


def _field_ref(pod: JsonDict, path: str, pod_ip: str, host_ip: str) -> str:
    meta, spec = pod["metadata"], pod["spec"]
    if path.startswith("metadata.labels['") or path.startswith("metadata.annotations['"):
        section, key = path.split("['", 1)
        return str((meta.get(section.split(".")[1]) or {}).get(key.rstrip("']"), ""))
    values = {
        "metadata.name": meta["name"],
        "metadata.namespace": meta["namespace"],
        "metadata.uid": meta["uid"],
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    return str(values.get(path, ""))


def build_env(
    client: Client, pod: JsonDict, container: JsonDict, base: dict[str, str], pod_ip: str, host_ip: str
) -> dict[str, str]:
    """The process environment: `base` (PATH, service host...), then envFrom, then env."""
    ns = pod["metadata"]["namespace"]
    env = dict(base)
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        if "configMapRef" in src:
            try:
                data = client.get(ConfigMap, src["configMapRef"]["name"], namespace=ns).data or {}
            except ApiError as e:
                if not src["configMapRef"].get("optional"):
                    raise ConfigError(str(e.status.message)) from e
                data = {}
        else:
            try:
                raw = client.get(Secret, src["secretRef"]["name"], namespace=ns).data or {}
            except ApiError as e:
                if not src["secretRef"].get("optional"):
                    raise ConfigError(str(e.status.message)) from e
                raw = {}
            data = {k: base64.b64decode(v).decode() for k, v in raw.items()}
        env.update({prefix + k: v for k, v in data.items()})
    for var in container.get("env") or []:
        value: str | None = None
        if "value" in var:
            value = expand(var["value"], env)
        elif "valueFrom" in var:
            vf = var["valueFrom"]
            if "secretKeyRef" in vf:
                value = _key_ref(client, "secret", ns, vf["secretKeyRef"])
            elif "configMapKeyRef" in vf:
                value = _key_ref(client, "configmap", ns, vf["configMapKeyRef"])
            elif "fieldRef" in vf:
                value = _field_ref(pod, vf["fieldRef"]["fieldPath"], pod_ip, host_ip)
            elif "resourceFieldRef" in vf:
                value = "0"  # no cgroups here: report "unlimited"
        env[var["name"]] = value if value is not None else ""
    return env


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool


def container_mounts(container: JsonDict, volumes: dict[str, Path]) -> list[Mount]:
    mounts = []
    for vm in container.get("volumeMounts") or []:
        src = volumes.get(vm["name"])
        if src is None:
            raise ConfigError(f"volumeMount {vm['name']!r} names no volume")
        if vm.get("subPath"):
            src = src / vm["subPath"]
        # Host files are the "image" here: a mountPath above the repo or the venv would hide
        # the very program the container runs. Say so instead of failing obscurely.
        for needed in (_SUPPORT, Path(sys.prefix)):
            if needed.is_relative_to(vm["mountPath"]):
                raise ConfigError(f"mountPath {vm['mountPath']} would hide {needed} on the process node")
        mounts.append(Mount(src, vm["mountPath"], bool(vm.get("readOnly"))))
    return mounts


STAGE_ROOT = Path("/run/localmodel-pods")


def launch_argv(
    netns: str, hostname: str, mounts: list[Mount], workdir: str | None, argv: list[str]
) -> list[str]:
    """Run `argv` inside the pod's network namespace and a private mount namespace in which
    each volume is bind-mounted at its mountPath (the host's view stays untouched), and an
    own UTS namespace whose hostname is the pod's name, as in a container.

    Two phases, as a container runtime does: every source is first bound to a staging
    directory, then staged mounts go to their targets, shallowest first. Binding straight
    from the sources would break as soon as one mountPath (say /work) hides the directory
    the next source lives in (/work/main/.cache/...)."""
    stage = STAGE_ROOT / netns
    lines = ["set -e", f"hostname {shlex.quote(hostname[:63])}"]
    for i, m in enumerate(mounts):
        kind = "-d" if m.source.is_dir() else "-f"
        staged = shlex.quote(str(stage / str(i)))
        make = f"mkdir -p {staged}" if kind == "-d" else f"mkdir -p {shlex.quote(str(stage))}; touch {staged}"
        lines += [make, f"mount --bind {shlex.quote(str(m.source))} {staged}"]
    for i, m in sorted(enumerate(mounts), key=lambda im: len(Path(im[1].target).parts)):
        target, staged = shlex.quote(m.target), shlex.quote(str(stage / str(i)))
        if m.source.is_dir():
            lines.append(f"mkdir -p {target}")
        else:
            lines.append(f'[ -e {target} ] || {{ mkdir -p "$(dirname {target})"; touch {target}; }}')
        lines.append(f"mount --bind {staged} {target}")
        if m.read_only:
            lines.append(f"mount -o remount,bind,ro {target}")
    if workdir:
        lines.append(f"cd {shlex.quote(workdir)}")
    lines.append('exec "$@"')
    script = "\n".join(lines)
    enter_netns = ["ip", "netns", "exec", netns]
    own_mounts_and_hostname = ["unshare", "--mount", "--uts", "--propagation", "private", "--"]
    return [*enter_netns, *own_mounts_and_hostname, "sh", "-c", script, "pod-launch", *argv]


def _probe_port(port: int | str, container: JsonDict) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ConfigError(f"probe names unknown port {port!r}")


def run_probe(probe: JsonDict, container: JsonDict, pod_ip: str, pid: int | None) -> bool:
    """One probe attempt: httpGet (2xx/3xx), tcpSocket (connects) or exec (exit 0)."""
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        if "httpGet" in probe:
            hg = probe["httpGet"]
            scheme = hg.get("scheme", "HTTP").lower()
            url = f"{scheme}://{pod_ip}:{_probe_port(hg['port'], container)}{hg.get('path', '/')}"
            headers = {h["name"]: h["value"] for h in hg.get("httpHeaders") or []}
            r = httpx.get(url, headers=headers, timeout=timeout, verify=False)
            return 200 <= r.status_code < 400
        if "tcpSocket" in probe:
            port = _probe_port(probe["tcpSocket"]["port"], container)
            with socket.create_connection((pod_ip, port), timeout=timeout):
                return True
        if "exec" in probe and pid is not None:
            cmd = ["nsenter", "-t", str(pid), "-m", "-n", "--", *probe["exec"]["command"]]
            return subprocess.run(cmd, capture_output=True, timeout=timeout).returncode == 0
    except (httpx.HTTPError, OSError, subprocess.TimeoutExpired, ConfigError):
        return False
    return True  # a probe kind we do not know (grpc): do not block readiness on it
