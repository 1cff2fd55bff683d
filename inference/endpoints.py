"""Which addresses a caller may make this service connect to.

A job's ``s3Config.endpointUrl`` is the caller's choice, and the shim later fetches audio from the URLs made
for it: both must be public addresses, so that neither the worker nor the shim can be pointed at a loopback,
private, link-local or metadata address on their network. The operator's own bucket (``BUCKET_*``) is trusted.
``ACESTEP_ALLOW_PRIVATE_ENDPOINTS`` lifts the rule for buckets on a private network.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from inference.errors import InputError


def check_public_url(url: str, field: str, allow_private: bool) -> None:
    """InputError naming ``field`` unless ``url`` is http(s) and every address its host resolves to is global."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"{field} must be an http:// or https:// URL with a host")
    if allow_private:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, ValueError):
        raise InputError(f"{field}: the host {parts.hostname[:100]!r} does not resolve") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global or address.is_multicast:  # Python counts some multicast ranges as global
            raise InputError(f"{field} must point to a public address: {parts.hostname[:100]!r} is a loopback, "
                             f"private, link-local or multicast one (ACESTEP_ALLOW_PRIVATE_ENDPOINTS allows it)")
