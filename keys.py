"""CurveZMQ key files for the collector → aggregator link (SPEC §7).

Key files are pyzmq certificates as `s3slower keygen` (zmq.auth) writes them:
NAME.key (public) and NAME.key_secret.  Network endpoints require CURVE
unless the operator says --insecure; ipc:// stays local and unencrypted.
"""
from __future__ import annotations

import glob
import os
from typing import Optional

import zmq.auth
from zmq.utils import z85


class KeyFileError(ValueError):
    """A key file, key directory or key/endpoint combination that cannot be used."""


def _load(path: str) -> tuple[bytes, Optional[bytes]]:
    try:
        return zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc}") from None


def load_secret(path: str) -> tuple[bytes, bytes]:
    public, secret = _load(path)
    if not secret:
        raise KeyFileError(f"{path} holds no secret key (give the .key_secret file)")
    return public, secret


def load_public_keys(directory: str) -> frozenset[bytes]:
    """Raw 32-byte public keys of every `*.key` file in directory."""
    paths = sorted(glob.glob(os.path.join(directory, "*.key")))
    if not paths:
        raise KeyFileError(f"no collector public keys (*.key) in {directory}")
    return frozenset(z85.decode(_load(p)[0]) for p in paths)


def _network(endpoints: list[str]) -> bool:
    return any(not e.startswith(("ipc://", "inproc://")) for e in endpoints)


def collector_curve(endpoint: str, secret_path: Optional[str], server_path: Optional[str],
                    insecure: bool):
    from s3slower.collector.publisher import CurveClient
    if secret_path or server_path:
        if not (secret_path and server_path):
            raise KeyFileError("CURVE needs both --curve-secret-key and --curve-server-key")
        public, secret = load_secret(secret_path)
        return CurveClient(public, secret, _load(server_path)[0])
    if _network([endpoint]) and not insecure:
        raise KeyFileError(f"{endpoint} is a network endpoint: give --curve-secret-key and "
                           "--curve-server-key, or --insecure for plain TCP")
    return None


def aggregator_curve(endpoints: list[str], secret_path: Optional[str],
                     allowed_dir: Optional[str], insecure: bool):
    from s3slower.aggregator.subscriber import CurveServer
    if secret_path or allowed_dir:
        if not (secret_path and allowed_dir):
            raise KeyFileError("CURVE needs both --curve-secret-key and --allowed-keys")
        public, secret = load_secret(secret_path)
        return CurveServer(public, secret, load_public_keys(allowed_dir))
    if _network(endpoints) and not insecure:
        raise KeyFileError(f"{', '.join(endpoints)}: network endpoints need "
                           "--curve-secret-key and --allowed-keys, or --insecure for plain TCP")
    return None
