"""Whether the Hugging Face hub can be reached, found out once per process in at most a second or two.

huggingface_hub retries an unreachable hub with back-off ("Retrying in 8s", over a minute in all) before it
fails; dbooth asks the cache first and goes to the hub only when this says it answers, so a missing model
on a machine without network is one line at once. Model-free: no torch, no huggingface_hub.
"""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlparse

TRUE = ("1", "true", "yes", "on")
TIMEOUT = 1.5  # seconds for the TCP handshake; the hub answers in well under that when it is reachable


def offline() -> bool:
    """``HF_HUB_OFFLINE`` set: the user asked for no network."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in TRUE


@functools.lru_cache(maxsize=None)
def hub_reachable() -> bool:
    """A TCP connection to the hub's endpoint (``HF_ENDPOINT``, or the HTTPS proxy when one is set) opens."""
    if offline():
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    target = urlparse(proxy if proxy and "://" in proxy else f"http://{proxy}") if proxy else endpoint
    host = target.hostname or "huggingface.co"
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=TIMEOUT).close()
    except OSError:  # no route, refused, no DNS, timed out
        return False
    return True
