"""RunPod's serverless queue API (``/run``, ``/runsync``, ``/status``, ``/cancel``, ``/health``) over HTTP.

429, 5xx and network errors are retried with exponential backoff (``Retry-After`` honoured up to 30 s);
other 4xx answers fail at once. Messages never include the API key.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

log = logging.getLogger("acestep.shim.runpod")
FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")


class RunPodError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class RunPodClient:
    def __init__(self, base_url: str, endpoint_id: str, api_key: str, attempts: int = 5, backoff_s: float = 0.5,
                 timeout_s: float = 30.0):
        self.endpoint_id = endpoint_id
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._http = httpx.AsyncClient(base_url=f"{base_url.rstrip('/')}/{endpoint_id}", timeout=timeout_s,
                                       headers={"Authorization": f"Bearer {api_key}"})

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, body: Any = None, timeout_s: float | None = None) -> dict:
        reason = "no answer"
        for attempt in range(1, self.attempts + 1):
            delay = self.backoff_s * 2 ** (attempt - 1)
            try:
                response = await self._http.request(method, path, json=body,
                                                    timeout=timeout_s if timeout_s else httpx.USE_CLIENT_DEFAULT)
            except httpx.TransportError as err:
                reason = f"network error ({type(err).__name__})"
            else:
                if response.status_code == 429 or response.status_code >= 500:
                    reason = f"HTTP {response.status_code}"
                    retry_after = response.headers.get("retry-after", "")
                    if retry_after.isdigit():
                        delay = min(float(retry_after), 30.0)
                elif response.status_code >= 400:
                    raise RunPodError(response.status_code, f"RunPod answered HTTP {response.status_code} to "
                                                            f"{method} {path.split('?')[0]}: {_short(response)}")
                else:
                    try:
                        return response.json()
                    except ValueError:
                        raise RunPodError(502, f"RunPod answered {method} {path} with something that is not "
                                               f"JSON") from None
            if attempt < self.attempts:
                log.warning("RunPod %s %s: %s (attempt %d/%d); retrying in %.1f s", method, path.split("?")[0],
                            reason, attempt, self.attempts, delay)
                await asyncio.sleep(delay)
        raise RunPodError(502, f"RunPod did not accept {method} {path.split('?')[0]} after {self.attempts} "
                               f"attempt(s): {reason}")

    async def run(self, job_input: dict[str, Any]) -> dict:
        return await self._call("POST", "/run", {"input": job_input})

    async def runsync(self, job_input: dict[str, Any], wait_ms: int = 90_000) -> dict:
        return await self._call("POST", f"/runsync?wait={wait_ms}", {"input": job_input},
                                timeout_s=wait_ms / 1000 + 30)

    async def status(self, job_id: str) -> dict:
        return await self._call("GET", f"/status/{job_id}")

    async def cancel(self, job_id: str) -> dict:
        return await self._call("POST", f"/cancel/{job_id}")

    async def health(self) -> dict:
        return await self._call("GET", "/health", timeout_s=5.0)


def _short(response: httpx.Response) -> str:
    try:
        data = response.json()
        text = data.get("error") or data.get("message") or data.get("detail") or str(data)
    except ValueError:
        text = response.text
    return " ".join(str(text).split())[:200] or response.reason_phrase
