"""Cross-job batching on the one accelerator thread.

Jobs submitted while the accelerator is busy wait in a list. Each time the thread is free it takes the oldest
waiting job and every other waiting job with the same key (same duration, steps and everything else the
pipeline takes once per call), up to ``max_size`` songs, and renders them in one call: a batch of 8 songs
costs far less accelerator time than 8 calls. Nothing waits on purpose, so a job alone is not delayed. If a
batch of several jobs fails (out of memory, a fault in one job's input), each job is rendered again alone,
so no job fails for having shared a batch with another.
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


@dataclass
class _Waiting(Generic[Item]):
    item: Item
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


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
        waiting = _Waiting(item, loop.create_future(), loop)
        with self._lock:
            self._waiting.append(waiting)
        # one turn on the accelerator thread per submitted item: a turn that finds its item already taken by an
        # earlier batch returns at once, so every item is served and none twice
        loop.run_in_executor(self._executor, self._turn)
        return await waiting.future

    def _take_group(self) -> list[_Waiting[Item]]:
        with self._lock:
            if not self._waiting:
                return []
            head = self._waiting.pop(0)
            group, total, key = [head], self._size(head.item), self._key(head.item)
            for other in list(self._waiting):
                size = self._size(other.item)
                if total + size <= self.max_size and self._key(other.item) == key:
                    group.append(other)
                    total += size
                    self._waiting.remove(other)
            return group

    def _turn(self) -> None:
        group = self._take_group()
        if not group:
            return
        try:
            results = self.render([w.item for w in group])
        except Exception as err:  # noqa: BLE001 - reported to the job(s) that asked
            if len(group) == 1:
                _settle(group[0], error=err)
                return
            log.warning("a batch of %d jobs failed (%s); rendering each alone", len(group), err)
            for waiting in group:
                try:
                    [result] = self.render([waiting.item])
                except Exception as alone:  # noqa: BLE001
                    _settle(waiting, error=alone)
                else:
                    _settle(waiting, result=result)
            return
        for waiting, result in zip(group, results, strict=True):
            _settle(waiting, result=result)


def _settle(waiting: _Waiting, result=None, error: BaseException | None = None) -> None:
    def settle() -> None:
        if waiting.future.done():  # the job was cancelled meanwhile
            return
        if error is not None:
            waiting.future.set_exception(error)
        else:
            waiting.future.set_result(result)

    waiting.loop.call_soon_threadsafe(settle)
