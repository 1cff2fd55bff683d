"""Cross-job batching on the one accelerator thread.

Jobs submitted while the accelerator is busy wait in a list. Each time the thread is free it takes the oldest
waiting job and every other waiting job with the same key (same duration, steps and everything else the
pipeline takes once per call), up to ``max_size`` songs, and renders them in one call: a batch of 8 songs
costs far less accelerator time than 8 calls. Nothing waits on purpose, so a job alone is not delayed. If a
batch of several jobs fails (out of memory, a fault in one job's input), each job is rendered again alone,
so no job fails for having shared a batch with another.

Every submitted job is settled, whatever happens: its key and size are computed when it is submitted (a
job whose key cannot be computed fails there, in its caller), a render that returns the wrong number of
results is a failure of that render, and a job whose caller stopped waiting (a cancelled RunPod job) leaves
the list instead of being rendered for nobody (one already taken into a batch renders with it, unless the
render's own check stops it: ``GenerationService.render_batch`` stops at the next step once all its jobs are
cancelled).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger("acestep.batching")

Item = TypeVar("Item")
Result = TypeVar("Result")


class RenderCountError(RuntimeError):
    """A render returned a different number of results than it was given items."""


@dataclass(eq=False)  # compared by identity: an item may hold tensors
class _Waiting(Generic[Item]):
    item: Item
    key: Hashable
    size: int
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    abandoned: bool = False  # its caller stopped waiting; set on the caller's loop, read on the render thread
    settled: bool = False  # its result or error has been handed to its loop (set on the render thread)


class Batcher(Generic[Item, Result]):
    def __init__(self, executor: Executor, render: Callable[[list[Item]], list[Result]],
                 key: Callable[[Item], Hashable], size: Callable[[Item], int], max_size: int):
        self._executor = executor
        self.render = render
        self._key = key
        self._size = size
        self.max_size = max_size
        self._waiting: list[_Waiting[Item]] = []
        self._lock = threading.Lock()

    async def submit(self, item: Item) -> Result:
        """Render ``item``, batched with whatever compatible work is waiting when the accelerator frees up."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(item, self._key(item), self._size(item), loop.create_future(), loop)
        with self._lock:
            self._waiting.append(waiting)
        # one turn on the accelerator thread per submitted item: a turn that finds its item already taken by an
        # earlier batch returns at once, so every item is served and none twice
        loop.run_in_executor(self._executor, self._turn)
        try:
            return await waiting.future
        except asyncio.CancelledError:
            waiting.abandoned = True
            with self._lock:
                if waiting in self._waiting:
                    self._waiting.remove(waiting)
            raise

    def _take_group(self) -> list[_Waiting[Item]]:
        with self._lock:
            live = [w for w in self._waiting if not w.abandoned]
            if not live:
                self._waiting.clear()
                return []
            head = live[0]
            group, total = [head], head.size
            for other in live[1:]:
                if total + other.size <= self.max_size and other.key == head.key:
                    group.append(other)
                    total += other.size
            taken = {id(w) for w in group}
            self._waiting = [w for w in live if id(w) not in taken]
            return group

    def _turn(self) -> None:
        group = self._take_group()
        if not group:
            return
        try:
            self._render_group(group)
        finally:  # whatever escaped (a BaseException on the way down), nobody may wait forever
            for waiting in group:
                if not waiting.settled:
                    _settle(waiting, error=RuntimeError("the accelerator thread stopped before this job was rendered"))

    def _render_group(self, group: list[_Waiting[Item]]) -> None:
        try:
            results = self._render_checked([w.item for w in group])
        except Exception as err:  # noqa: BLE001 - reported to the job(s) that asked
            if len(group) == 1:
                _settle(group[0], error=err)
                return
            log.warning("a batch of %d jobs failed (%s); rendering each alone", len(group), err)
            for waiting in group:
                if waiting.abandoned:
                    continue
                try:
                    [result] = self._render_checked([waiting.item])
                except Exception as alone:  # noqa: BLE001
                    _settle(waiting, error=alone)
                else:
                    _settle(waiting, result=result)
            return
        for waiting, result in zip(group, results):
            _settle(waiting, result=result)

    def _render_checked(self, items: list[Item]) -> list[Result]:
        results = list(self.render(items))
        if len(results) != len(items):
            raise RenderCountError(f"the render returned {len(results)} result(s) for {len(items)} job(s)")
        return results


def _settle(waiting: _Waiting, result=None, error: BaseException | None = None) -> None:
    waiting.settled = True

    def settle() -> None:
        if waiting.future.done():  # the job was cancelled meanwhile
            return
        if error is not None:
            waiting.future.set_exception(error)
        else:
            waiting.future.set_result(result)

    try:
        waiting.loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the caller's loop is closed: nobody is waiting any more
        log.debug("a job's event loop closed before its result was ready")
