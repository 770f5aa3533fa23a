"""Tests of fairvlm.memo: stored values come back, the least recently used go first."""

from __future__ import annotations

import threading

import pytest

from fairvlm.memo import Memo


def test_a_stored_value_is_returned_without_computing_again() -> None:
    memo, calls = Memo(), []
    first = memo(("a", 1), lambda: calls.append(1) or [1, 2])
    again = memo(("a", 1), lambda: calls.append(2) or [3])
    assert again is first and calls == [1]
    assert (memo.hits, memo.misses) == (1, 1)


def test_the_least_recently_used_value_is_dropped_beyond_max_entries() -> None:
    memo = Memo(max_entries=2)
    memo("a", lambda: 1)
    memo("b", lambda: 2)
    memo("a", lambda: 0)  # "a" is now the most recent
    memo("c", lambda: 3)
    assert len(memo) == 2
    assert memo("a", lambda: "recomputed") == 1
    assert memo("b", lambda: "recomputed") == "recomputed"


def test_an_exception_stores_nothing() -> None:
    memo = Memo()

    def fail() -> int:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        memo("k", fail)
    assert len(memo) == 0 and memo("k", lambda: 5) == 5


def test_threads_share_one_store() -> None:
    memo = Memo(max_entries=2000)
    threads = [threading.Thread(target=lambda i=i: [memo((i % 7, j), lambda j=j: j)
                                                    for j in range(200)]) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(memo) == 7 * 200
    assert all(memo((i, j), lambda: None) == j for i in range(7) for j in range(200))


def test_max_entries_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        Memo(max_entries=0)


def test_a_key_being_computed_is_computed_once_for_all_waiting_threads() -> None:
    memo, calls, started = Memo(), [], threading.Event()
    release = threading.Event()

    def slow() -> str:
        calls.append(1)
        started.set()
        release.wait(5)
        return "value"

    results: list[str] = []
    first = threading.Thread(target=lambda: results.append(memo("k", slow)))
    first.start()
    started.wait(5)
    waiters = [threading.Thread(target=lambda: results.append(memo("k", slow)))
               for _ in range(3)]
    for thread in waiters:
        thread.start()
    release.set()
    for thread in (first, *waiters):
        thread.join(5)
    assert results == ["value"] * 4 and calls == [1]
    assert (memo.hits, memo.misses) == (3, 1)


def test_waiters_compute_themselves_when_the_first_computation_fails() -> None:
    memo, started, release = Memo(), threading.Event(), threading.Event()

    def fail() -> str:
        started.set()
        release.wait(5)
        raise RuntimeError("boom")

    errors: list[Exception] = []

    def first() -> None:
        try:
            memo("k", fail)
        except RuntimeError as error:
            errors.append(error)

    thread = threading.Thread(target=first)
    thread.start()
    started.wait(5)
    waiter_result: list[str] = []
    waiter = threading.Thread(target=lambda: waiter_result.append(memo("k", lambda: "ok")))
    waiter.start()
    release.set()
    thread.join(5)
    waiter.join(5)
    assert len(errors) == 1 and waiter_result == ["ok"]
