"""A STAND-IN for RunPod's cloud queue service, which cannot run here. Tests only.

It speaks both sides of the queue as RunPod's SDK and HTTP API use them, so everything around it is real:
- to clients (the shim's runpod backend, ``runpod.Endpoint``): ``/v2/{id}/run``, ``/runsync``,
  ``/status/{job}``, ``/cancel/{job}``, ``/health``, with ``Authorization`` checked;
- to a real ``python handler.py`` worker, whose SDK job loop polls ``job-take`` or, when its
  ``concurrency_modifier`` allows several jobs, ``job-take-batch`` (long-poll, 204 when idle),
  posts progress and results to ``job-done`` and long-polls ``job-stop``.
A job whose result carries ``error`` ends FAILED, as on RunPod. Test controls under ``/_standin/``: fail the
next client calls of a route (``run``, ``status``, ...; ``any`` for every route) with given HTTP statuses, hold
the answer to the next call of a route for some seconds after doing it (a timeout after RunPod took the
request), slow every ``/status`` answer down (the most answered at once is counted), finish the next ``/run`` job at once with a given output (what a worker, or an attacker's fake
bucket behind one, could return), forget every job (RunPod keeps results for 30 minutes), count calls.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")


class RunPodStandIn:
    def __init__(self, endpoint_id: str, client_key: str, worker_key: str):
        self.endpoint_id = endpoint_id
        self.client_key = client_key
        self.worker_key = worker_key
        self.jobs: dict[str, dict] = {}
        self.waiting: asyncio.Queue | None = None
        self.fail_next: dict[str, list[int]] = {}
        self.hang_next: dict[str, float] = {}
        self.complete_next: list[dict] = []  # outputs the next /run jobs finish with at once, as a worker would
        self.status_delay_s = 0.0  # how long each /status answer takes
        self.status_in_flight = 0
        self.status_most_in_flight = 0
        self.calls: Counter = Counter()
        self.app = self._build()

    # --- the two sides ---
    def _build(self) -> FastAPI:
        app = FastAPI()
        base = "/v2/{endpoint_id}"

        @app.middleware("http")
        async def client_faults(request: Request, call_next):
            path = request.url.path
            client_side = not any(part in path for part in ("/job-take/", "/job-take-batch/", "/job-done/",
                                                            "/job-stop/", "/ping", "/_standin/"))
            if client_side:
                route = path.split("/")[3] if path.count("/") >= 3 else path
                self.calls[f"{request.method} {route}"] += 1
                if request.headers.get("authorization", "") not in (f"Bearer {self.client_key}", self.client_key):
                    return JSONResponse({"error": "Unauthorized"}, status_code=401)
                for key in (route, "any"):
                    if self.fail_next.get(key):
                        status = self.fail_next[key].pop(0)
                        self.calls[f"injected {status}"] += 1
                        return JSONResponse({"error": f"injected {status}"}, status_code=status)
                hang = self.hang_next.pop(route, 0.0)
                if hang:
                    answer = await call_next(request)  # done, but the answer comes too late
                    self.calls[f"hung {route}"] += 1
                    await asyncio.sleep(hang)
                    return answer
            elif "/_standin/" not in path and request.headers.get("authorization", "") != self.worker_key:
                return JSONResponse({"error": "worker not authorized"}, status_code=401)
            return await call_next(request)

        @app.post(base + "/run")
        async def run(endpoint_id: str, request: Request):
            job = self._new_job((await request.json())["input"], queued=not self.complete_next)
            if self.complete_next:
                job.update(status="COMPLETED", output=self.complete_next.pop(0), started=time.time(),
                           finished=time.time())
            return {"id": job["id"], "status": job["status"]}

        @app.post(base + "/runsync")
        async def runsync(endpoint_id: str, request: Request, wait: int = 90_000):
            job = self._new_job((await request.json())["input"])
            deadline = time.monotonic() + wait / 1000
            while job["status"] not in FINAL and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return self._public(job)

        @app.get(base + "/status/{job_id}")
        async def status(endpoint_id: str, job_id: str):
            self.status_in_flight += 1
            self.status_most_in_flight = max(self.status_most_in_flight, self.status_in_flight)
            try:
                await asyncio.sleep(self.status_delay_s)
            finally:
                self.status_in_flight -= 1
            job = self.jobs.get(job_id)
            if job is None:
                return JSONResponse({"error": "request does not exist"}, status_code=404)
            return self._public(job)

        @app.post(base + "/cancel/{job_id}")
        async def cancel(endpoint_id: str, job_id: str):
            job = self.jobs.get(job_id)
            if job is None:
                return JSONResponse({"error": "request does not exist"}, status_code=404)
            if job["status"] not in FINAL:
                job["status"] = "CANCELLED"
            return {"id": job_id, "status": job["status"]}

        @app.get(base + "/health")
        async def health(endpoint_id: str):
            states = Counter(job["status"] for job in self.jobs.values())
            return {"jobs": {"completed": states["COMPLETED"], "failed": states["FAILED"],
                             "inProgress": states["IN_PROGRESS"], "inQueue": states["IN_QUEUE"], "retried": 0},
                    "workers": {"idle": 1, "running": 0}}

        # --- the worker side, as the SDK's job loop calls it ---
        @app.get(base + "/job-take/{worker_id}")
        async def job_take(endpoint_id: str, worker_id: str):
            try:
                job_id = await asyncio.wait_for(self._queue().get(), timeout=1.0)
            except asyncio.TimeoutError:
                return Response(status_code=204)
            job = self.jobs.get(job_id)
            if job is None or job["status"] != "IN_QUEUE":
                return Response(status_code=204)
            job["status"], job["started"] = "IN_PROGRESS", time.time()
            return {"id": job_id, "input": job["input"]}

        @app.get(base + "/job-take-batch/{worker_id}")
        async def job_take_batch(endpoint_id: str, worker_id: str, batch_size: int = 1):
            """What the SDK polls when its concurrency_modifier allows more than one job: a list."""
            jobs = []
            try:
                jobs.append(await asyncio.wait_for(self._queue().get(), timeout=1.0))
                while len(jobs) < batch_size and not self._queue().empty():
                    jobs.append(self._queue().get_nowait())
            except asyncio.TimeoutError:
                return Response(status_code=204)
            taken = []
            for job_id in jobs:
                job = self.jobs.get(job_id)
                if job is not None and job["status"] == "IN_QUEUE":
                    job["status"], job["started"] = "IN_PROGRESS", time.time()
                    taken.append({"id": job_id, "input": job["input"]})
            return taken if taken else Response(status_code=204)

        @app.get(base + "/job-stop/{worker_id}")
        async def job_stop(endpoint_id: str, worker_id: str):
            await asyncio.sleep(1.0)
            return Response(status_code=204)

        @app.post(base + "/job-done/{worker_id}/{job_id}")
        async def job_done(endpoint_id: str, worker_id: str, job_id: str, request: Request):
            result = json.loads(await request.body())
            job = self.jobs.get(job_id)
            if job is None or job["status"] in FINAL:
                return {}
            if result.get("status") == "IN_PROGRESS":  # runpod.serverless.progress_update
                job["output"] = result.get("output")
                return {}
            job["finished"] = time.time()
            if result.get("error"):
                job["status"], job["error"] = "FAILED", result["error"]
                job["output"] = result.get("output")
            else:
                job["status"], job["output"] = "COMPLETED", result.get("output")
            return {}

        # --- test controls ---
        @app.post("/_standin/fail_next")
        async def fail_next(request: Request):
            body = await request.json()
            self.fail_next.setdefault(body.get("route", "any"), []).extend(body["statuses"])
            return {"queued_faults": sum(len(v) for v in self.fail_next.values())}

        @app.post("/_standin/hang_next")
        async def hang_next(request: Request):
            body = await request.json()
            self.hang_next[body["route"]] = float(body["seconds"])
            return {}

        @app.post("/_standin/slow_status")
        async def slow_status(request: Request):
            self.status_delay_s = float((await request.json())["seconds"])
            return {}

        @app.post("/_standin/complete_next")
        async def complete_next(request: Request):
            self.complete_next.append((await request.json())["output"])
            return {}

        @app.post("/_standin/forget")
        async def forget():
            self.jobs.clear()
            return {}

        return app

    def _queue(self) -> asyncio.Queue:
        if self.waiting is None:
            self.waiting = asyncio.Queue()
        return self.waiting

    def _new_job(self, job_input: dict, queued: bool = True) -> dict:
        job = {"id": f"{uuid.uuid4()}-u1", "status": "IN_QUEUE", "input": job_input, "created": time.time(),
               "started": None, "finished": None, "output": None, "error": None}
        self.jobs[job["id"]] = job
        if queued:
            self._queue().put_nowait(job["id"])
        return job

    @staticmethod
    def _public(job: dict) -> dict:
        now = time.time()
        answer = {"id": job["id"], "status": job["status"],
                  "delayTime": int(((job["started"] or now) - job["created"]) * 1000)}
        if job["started"]:
            answer["executionTime"] = int(((job["finished"] or now) - job["started"]) * 1000)
        if job["output"] is not None:
            answer["output"] = job["output"]
        if job["error"]:
            answer["error"] = job["error"]
        return answer


class ServerThread:
    """Runs an ASGI app with uvicorn on a loopback port in a background thread."""

    def __init__(self, app, port: int):
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise TimeoutError("the stand-in did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)
