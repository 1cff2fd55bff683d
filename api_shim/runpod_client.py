"""RunPod's serverless queue API (``/run``, ``/runsync``, ``/status``, ``/cancel``, ``/health``) over HTTP.

A call is sent again only when that cannot create a second job. Reads (``/status``, ``/health``) and
``/cancel`` are retried on 429, 5xx and network errors. Calls that create a job (``/run``, ``/runsync``) are
retried only when RunPod provably did not take them: a 429 (RunPod refused it), or a connection that was never
made (refused, timed out connecting, no free connection in the pool). After a 5xx, a read timeout or a
dropped connection the job may exist, so the caller is told that instead of being billed twice. Backoff is
exponential, ``Retry-After`` is honoured up to 30 s, other 4xx answers fail at once, and no message ever
includes the API key.

RunPod's SDK has an asynchronous endpoint client (``runpod.endpoint.AsyncioEndpoint``); it is not used here
because it has no ``runsync``, does not look at HTTP statuses (a 429 or 5xx answer becomes a ``KeyError`` on
the missing job id), sets no timeouts and retries nothing, and reads the base URL from a module global.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx

log = logging.getLogger("acestep.shim.runpod")
FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)  # the request never left this process


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
                                       headers={"Authorization": f"Bearer {api_key}"},
                                       limits=httpx.Limits(max_connections=32, max_keepalive_connections=16))

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, body: Any = None, timeout_s: float | None = None,
                    creates_job: bool = False, attempts: int | None = None) -> dict:
        name = f"{method} {path.split('?')[0]}"
        reason = "no answer"
        attempts = attempts or self.attempts
        for attempt in range(1, attempts + 1):
            delay = self.backoff_s * 2 ** (attempt - 1)
            try:
                response = await self._http.request(method, path, json=body,
                                                    timeout=timeout_s if timeout_s else httpx.USE_CLIENT_DEFAULT)
            except NOT_SENT as err:
                reason = f"could not connect ({type(err).__name__})"
            except httpx.TransportError as err:
                if creates_job:
                    raise RunPodError(504 if isinstance(err, httpx.TimeoutException) else 502,
                                      f"RunPod did not answer {name} ({type(err).__name__}); it may have created the "
                                      f"job, so the request was not sent again") from None
                reason = f"network error ({type(err).__name__})"
            else:
                status = response.status_code
                if status == 429 or (status >= 500 and not creates_job):
                    reason = f"HTTP {status}"
                    retry_after = response.headers.get("retry-after", "")
                    if retry_after.isdigit():
                        delay = min(float(retry_after), 30.0)
                elif status >= 500:
                    raise RunPodError(502, f"RunPod answered HTTP {status} to {name}: {_short(response)}; it may have "
                                           f"created the job, so the request was not sent again")
                elif status >= 400:
                    raise RunPodError(status, f"RunPod answered HTTP {status} to {name}: {_short(response)}")
                else:
                    try:
                        return response.json()
                    except ValueError:
                        raise RunPodError(502, f"RunPod answered {name} with something that is not JSON") from None
            if attempt < attempts:
                log.warning("RunPod %s: %s (attempt %d/%d); retrying in %.1f s", name, reason, attempt, attempts,
                            delay)
                await asyncio.sleep(delay)
        raise RunPodError(502, f"RunPod did not accept {name} after {attempts} attempt(s): {reason}")

    async def run(self, job_input: dict[str, Any]) -> dict:
        return await self._call("POST", "/run", {"input": job_input}, creates_job=True)

    async def runsync(self, job_input: dict[str, Any], wait_ms: int = 90_000) -> dict:
        return await self._call("POST", f"/runsync?wait={wait_ms}", {"input": job_input},
                                timeout_s=wait_ms / 1000 + 30, creates_job=True)

    async def status(self, job_id: str, attempts: int | None = None) -> dict:
        return await self._call("GET", f"/status/{job_id}", attempts=attempts)

    async def cancel(self, job_id: str) -> dict:
        return await self._call("POST", f"/cancel/{job_id}")

    async def health(self) -> dict:
        return await self._call("GET", "/health", timeout_s=5.0)


def _short(response: httpx.Response) -> str:
    try:
        data = response.json()
        text = (data.get("error") or data.get("message") or data.get("detail") or str(data)) \
            if isinstance(data, dict) else str(data)
    except ValueError:
        text = response.text
    return " ".join(str(text).split())[:200] or response.reason_phrase


def job_error(state: dict[str, Any]) -> str | None:
    """The reason a RunPod job failed, as one line: our handler's message, or the SDK's error record."""
    error = state.get("error")
    output = state.get("output")
    if not error and isinstance(output, dict):
        error = output.get("error")
    if not error:
        return None
    if isinstance(error, str):
        try:
            record = json.loads(error)
            if isinstance(record, dict) and record.get("error_message"):
                error = f"{record.get('error_type', 'error')}: {record['error_message']}"
        except json.JSONDecodeError:
            pass
    return " ".join(str(error).split())[:500]
