"""Real parallel requests for the race tests: threads released together by a barrier."""

from __future__ import annotations

import threading


def race(*requests, timeout: float = 120):
    """Run each callable in its own thread, all released at once, and return what each
    returned, or the exception it raised (the app propagates errors in tests, where a server
    would answer 500): a test decides whether an exception is a failure."""
    barrier = threading.Barrier(len(requests))
    results: list = [None] * len(requests)

    def run(index, request):
        try:
            barrier.wait(timeout=30)
            results[index] = request()
        except BaseException as exc:  # reported to the test as the result
            results[index] = exc

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads)
    return results


def race_all_answered(*requests):
    """``race``, failing on the first request that raised instead of answering."""
    results = race(*requests)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results
