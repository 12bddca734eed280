"""Locks for the embedded SeaweedFS's non-S3 doors: mutual TLS on every gRPC port, JWT-signed
HTTP on the volume and filer ports, and SeaweedFS's own security.toml that says so.

`weed mini` opens master, volume, filer and admin ports beside S3. Without a security.toml
each of them reads, writes and deletes objects for anyone on the machine. Here:
- every gRPC server requires a client certificate from a CA generated on first start. The CA's
  private key is discarded once it has signed the one node certificate, so nobody can mint
  another; all files are owner-only.
- the volume server accepts reads and writes only with a JWT signed by keys that are generated
  at every start and live only in the owner-only security.toml (the master hands such tokens
  out over its mTLS gRPC port only, since its HTTP API is switched off by `-disableHttp`).
- the filer's HTTP API is switched off too, and its JWT keys are set anyway (they also gate the
  filer's IAM gRPC service); the volume UI and filer directory metadata are off.
The S3 port keeps SigV4 with the project's generated keys.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from s3_assets.lib.local_process import chmod_private, private_dir

SECURITY_DIR = "security"
SECURITY_TOML = "security.toml"
CA_CERT = "ca.crt"
NODE_CERT = "node.crt"
NODE_KEY = "node.key"
# Every gRPC component section SeaweedFS reads (server side, and client side for dials).
GRPC_COMPONENTS = (
    "master", "volume", "filer", "s3", "admin", "worker", "msg_broker", "msg_agent", "mq", "client",
)
CERT_DAYS = 3650
JWT_SECONDS = 60


@dataclass(frozen=True)
class TlsFiles:
    """The CA certificate and the node's certificate and key (server and client alike)."""

    ca: Path
    cert: Path
    key: Path


def _write_private(path: Path, data: bytes) -> None:
    """Write owner-only from the first byte (no window in which the file is world-readable)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def security_dir(data_dir: Path) -> Path:
    return private_dir(data_dir / SECURITY_DIR, "a folder of the embedded S3's data directory")


def ensure_tls(data_dir: Path) -> TlsFiles:
    """The node's mTLS files, generated on first start (or when one is missing or expired)."""
    folder = security_dir(data_dir)
    files = TlsFiles(folder / CA_CERT, folder / NODE_CERT, folder / NODE_KEY)
    if not _tls_valid(files):
        _generate_tls(files)
    for path in (files.ca, files.cert, files.key):
        chmod_private(path)
    return files


def _tls_valid(files: TlsFiles) -> bool:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        x509.load_pem_x509_certificate(files.ca.read_bytes())
        files.key.stat()
    except (OSError, ValueError):
        return False
    margin = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30)
    return cert.not_valid_after_utc > margin


def _generate_tls(files: TlsFiles) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    until = now + datetime.timedelta(days=CERT_DAYS)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"s3-assets local CA {secrets.token_hex(4)}")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    node_key = ec.generate_private_key(ec.SECP256R1())
    node_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "s3-assets seaweedfs")]))
        .issuer_name(ca_name).public_key(node_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    # The CA key is never written: with it gone, no other certificate can join.
    _write_private(files.key, node_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    _write_private(files.cert, node_cert.public_bytes(serialization.Encoding.PEM))
    _write_private(files.ca, ca_cert.public_bytes(serialization.Encoding.PEM))


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_security_toml(data_dir: Path, tls: TlsFiles) -> Path:
    """SeaweedFS's security.toml with fresh JWT keys. Tokens are made and checked inside the
    weed process (S3 gateway, master, volume server) and travel only over loopback; they live
    60 s, SeaweedFS's read default, so a retried chunk read or upload of a slow request keeps a
    valid token."""
    lines = ["# Written by s3-assets at every start of the embedded S3; owner-only. Do not edit."]
    for section in ("jwt.signing", "jwt.signing.read", "jwt.filer_signing", "jwt.filer_signing.read"):
        lines += [f"[{section}]", f"key = {_toml_string(secrets.token_urlsafe(32))}", f"expires_after_seconds = {JWT_SECONDS}"]
    lines += ["[access]", "ui = false", "[filer.expose_directory_metadata]", "enabled = false"]
    lines += ["[admin]", f"user = {_toml_string('admin' + secrets.token_hex(4))}",
              f"password = {_toml_string(secrets.token_urlsafe(24))}"]
    lines += ["[grpc]", f"ca = {_toml_string(str(tls.ca))}"]
    for component in GRPC_COMPONENTS:
        lines += [f"[grpc.{component}]", f"cert = {_toml_string(str(tls.cert))}",
                  f"key = {_toml_string(str(tls.key))}"]
    path = security_dir(data_dir) / SECURITY_TOML
    _write_private(path, ("\n".join(lines) + "\n").encode())
    return path
