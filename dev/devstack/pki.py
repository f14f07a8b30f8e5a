"""The node's certificates: a CA of its own, the kubelet's serving certificate, and the client
certificate the API server shows the kubelet (for logs and exec). Made once per state directory
and kept, so restarts keep trusting each other. Keys are 0600."""

from __future__ import annotations

import os
from pathlib import Path

from .processes import run

DAYS = "3650"


def _key(path: Path) -> None:
    if not path.exists():
        run(["openssl", "genrsa", "-out", path, "2048"])
        os.chmod(path, 0o600)


def ensure_ca(pki: Path) -> Path:
    pki.mkdir(parents=True, exist_ok=True)
    os.chmod(pki, 0o700)
    key, cert = pki / "ca.key", pki / "ca.crt"
    _key(key)
    if not cert.exists():
        run(
            [
                *("openssl", "req", "-x509", "-new", "-key", key, "-out", cert, "-days", DAYS),
                *("-subj", "/CN=batchnotebook-node-ca"),
            ]
        )
    return cert


def ensure_certificate(
    pki: Path, name: str, subject: str, ips: tuple[str, ...] = (), client: bool = False
) -> tuple[Path, Path]:
    """A certificate signed by the node's CA; `ips` as subject alternative names."""
    key, cert, request = pki / f"{name}.key", pki / f"{name}.crt", pki / f"{name}.csr"
    ensure_ca(pki)
    _key(key)
    if not cert.exists():
        extensions = pki / f"{name}.ext"
        usage = "clientAuth" if client else "serverAuth"
        lines = [f"extendedKeyUsage={usage}", "keyUsage=digitalSignature,keyEncipherment"]
        if ips:
            lines.append("subjectAltName=" + ",".join(f"IP:{ip}" for ip in ips))
        extensions.write_text("\n".join(lines) + "\n")
        run(["openssl", "req", "-new", "-key", key, "-out", request, "-subj", subject])
        run(
            [
                *("openssl", "x509", "-req", "-in", request, "-CA", pki / "ca.crt"),
                *("-CAkey", pki / "ca.key", "-CAcreateserial", "-out", cert, "-days", DAYS),
                *("-extfile", extensions),
            ]
        )
        request.unlink()
    return cert, key
