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


_TRANSLATED = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("::/96"))  # NAT64, IPv4-compatible


def check_public_url(url: str, field: str, allow_private: bool) -> None:
    """InputError naming ``field`` unless ``url`` is http(s) and every address its host resolves to is global."""
    if allow_private:
        _http_parts(url, field)
        return
    public_address(url, field, allow_private)


def _http_parts(url: str, field: str):
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"{field} must be an http:// or https:// URL with a host")
    return parts


def public_address(url: str, field: str, allow_private: bool) -> str:
    """The address to connect to for ``url``, once every address its host resolves to has passed the rule;
    connecting to this one (not resolving again) leaves no window for an answer that changes (DNS rebinding)."""
    parts = _http_parts(url, field)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, ValueError):
        raise InputError(f"{field}: the host {parts.hostname[:100]!r} does not resolve") from None
    if not infos:
        raise InputError(f"{field}: the host {parts.hostname[:100]!r} does not resolve")
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if allow_private:
            continue
        translated = address.version == 6 and any(address in net for net in _TRANSLATED)
        if not address.is_global or address.is_multicast or translated:  # some multicast ranges count as global
            raise InputError(f"{field} must point to a public address: {parts.hostname[:100]!r} is a loopback, "
                             f"private, link-local or multicast one (ACESTEP_ALLOW_PRIVATE_ENDPOINTS allows it)")
    return infos[0][4][0].split("%")[0]
