"""A tiny PKI for the test control plane, made with the `openssl` CLI.

Why openssl and not the `cryptography` package: openssl is on every Debian machine already,
so the test tooling needs no extra Python dependency. Keys are EC P-256 (fast to generate).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_DAYS = "3650"


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


def _openssl(*args: str, cwd: Path) -> None:
    if shutil.which("openssl") is None:
        raise RuntimeError("the test control plane needs the `openssl` CLI (apt-get install openssl)")
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ec_key(path: Path) -> None:
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(path), cwd=path.parent)
    path.chmod(0o600)


def make_ca(directory: Path, name: str = "ca") -> CertPair:
    pair = CertPair(directory / f"{name}.crt", directory / f"{name}.key")
    _ec_key(pair.key)
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        str(pair.key),
        "-out",
        str(pair.cert),
        "-days",
        _DAYS,
        "-subj",
        "/CN=localmodel-test-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        cwd=directory,
    )
    return pair


def issue(
    ca: CertPair,
    directory: Path,
    name: str,
    common_name: str,
    *,
    organization: str | None = None,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    server: bool = False,
) -> CertPair:
    """Issue a leaf cert signed by `ca`; `organization` becomes the Kubernetes group."""
    pair = CertPair(directory / f"{name}.crt", directory / f"{name}.key")
    _ec_key(pair.key)
    subject = f"/CN={common_name}" + (f"/O={organization}" if organization else "")
    ext = directory / f"{name}.ext"
    lines = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={'serverAuth,clientAuth' if server else 'clientAuth'}",
    ]
    sans = [f"DNS:{d}" for d in dns] + [f"IP:{i}" for i in ips]
    if sans:
        lines.append("subjectAltName=" + ",".join(sans))
    ext.write_text("\n".join(lines) + "\n")
    csr = directory / f"{name}.csr"
    _openssl("req", "-new", "-key", str(pair.key), "-out", str(csr), "-subj", subject, cwd=directory)
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca.cert),
        "-CAkey",
        str(ca.key),
        "-CAcreateserial",
        "-out",
        str(pair.cert),
        "-days",
        _DAYS,
        "-extfile",
        str(ext),
        cwd=directory,
    )
    csr.unlink()
    ext.unlink()
    return pair


def make_rsa_keypair(private: Path, public: Path) -> None:
    """The service-account signing key (RSA: what every client of SA tokens expects)."""
    _openssl("genrsa", "-out", str(private), "2048", cwd=private.parent)
    private.chmod(0o600)
    _openssl("rsa", "-in", str(private), "-pubout", "-out", str(public), cwd=private.parent)
