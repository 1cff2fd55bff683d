"""The batcher on its own: grouping by key up to the batch size, order, and failures kept to their job."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from inference.batching import Batcher


def run(items, render, max_size=4):
    """Submit ``items`` (key, size, name) while the one worker thread is held busy, then release it; returns
    the results and how many items each call of ``render`` was given."""
    sizes = []

    def counted(group):
        sizes.append(len(group))
        return render(group)

    executor = ThreadPoolExecutor(max_workers=1)
    busy = threading.Event()
    executor.submit(busy.wait)
    batcher = Batcher(executor, counted, key=lambda i: i[0], size=lambda i: i[1], max_size=max_size)

    async def main():
        tasks = [asyncio.ensure_future(batcher.submit(item)) for item in items]
        await asyncio.sleep(0.05)
        busy.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    try:
        return asyncio.run(main()), sizes
    finally:
        executor.shutdown()


def test_waiting_items_with_one_key_share_a_call_up_to_the_size():
    calls = []

    def render(items):
        calls.append([name for _, _, name in items])
        return [f"done {name}" for _, _, name in items]

    items = [("10s", 2, "a"), ("12s", 1, "b"), ("10s", 1, "c"), ("10s", 2, "d"), ("10s", 1, "e")]
    results, sizes = run(items, render)
    assert results == [f"done {name}" for _, _, name in items]
    assert calls == [["a", "c", "e"], ["b"], ["d"]]  # oldest first; d would make 6 songs > 4
    assert sizes == [3, 1, 1]


def test_a_failed_batch_is_retried_job_by_job():
    def render(items):
        if len(items) > 1:
            raise MemoryError("out of memory for the batch")
        (_, _, name), = items
        if name == "bad":
            raise ValueError("bad input")
        return [name.upper()]

    results, sizes = run([("k", 1, "x"), ("k", 1, "bad"), ("k", 1, "y")], render)
    assert results[0] == "X" and results[2] == "Y"
    assert isinstance(results[1], ValueError) and str(results[1]) == "bad input"
    assert sizes == [3, 1, 1, 1]  # the batch, then each job alone


def test_a_lone_item_is_not_held_back():
    executor = ThreadPoolExecutor(max_workers=1)
    batcher = Batcher(executor, lambda items: [i * 2 for i in items], key=lambda i: 0, size=lambda i: 1,
                      max_size=8)
    assert asyncio.run(asyncio.wait_for(batcher.submit(21), timeout=5)) == 42
    executor.shutdown()


@pytest.mark.parametrize("size", [1, 3])
def test_every_item_is_served_exactly_once(size):
    seen = []

    def render(items):
        seen.extend(items)
        return items

    items = [(i % 3, 1, f"item-{i}") for i in range(20)]
    results, _ = run(items, render, max_size=size)
    assert results == items
    assert sorted(seen) == sorted(items)


def test_a_render_returning_the_wrong_number_of_results_fails_its_jobs_instead_of_hanging():
    results, sizes = run([("k", 1, "a"), ("k", 1, "b")], lambda items: [])
    assert [str(r) for r in results] == ["the render returned 0 result(s) for 1 job(s)"] * 2
    assert sizes == [2, 1, 1]  # the batch, then each job alone
    results, _ = run([("k", 1, "a"), ("k", 1, "b")], lambda items: items[:1])  # short only for a batch
    assert results == [("k", 1, "a"), ("k", 1, "b")]


def test_a_job_whose_key_cannot_be_computed_fails_at_once_and_the_others_are_served():
    def key(item):
        if item == "bad":
            raise ValueError("no key for this job")
        return 0

    executor = ThreadPoolExecutor(max_workers=1)
    batcher = Batcher(executor, lambda items: [i.upper() for i in items], key=key, size=lambda i: 1, max_size=8)

    async def main():
        return await asyncio.wait_for(asyncio.gather(batcher.submit("a"), batcher.submit("bad"), batcher.submit("c"),
                                                     return_exceptions=True), timeout=5)

    try:
        a, bad, c = asyncio.run(main())
    finally:
        executor.shutdown()
    assert (a, c) == ("A", "C")
    assert isinstance(bad, ValueError) and str(bad) == "no key for this job"


def test_a_job_cancelled_while_waiting_for_the_accelerator_is_never_rendered():
    rendered = []

    def render(items):
        rendered.extend(items)
        return items

    executor = ThreadPoolExecutor(max_workers=1)
    busy = threading.Event()
    executor.submit(busy.wait)
    batcher = Batcher(executor, render, key=lambda i: 0, size=lambda i: 1, max_size=8)

    async def main():
        jobs = [asyncio.ensure_future(batcher.submit(name)) for name in ("a", "b", "c")]
        await asyncio.sleep(0.05)  # all three wait in the batcher's list
        jobs[1].cancel()
        await asyncio.sleep(0.05)
        busy.set()
        return await asyncio.gather(*jobs, return_exceptions=True)

    try:
        a, b, c = asyncio.run(main())
    finally:
        executor.shutdown()
    assert (a, c) == ("a", "c") and isinstance(b, asyncio.CancelledError)
    assert rendered == ["a", "c"]
