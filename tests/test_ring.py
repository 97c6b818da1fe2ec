"""The ranks' ring of TCP connections (skol_spark.fit.distributed.ring): sums, gathers, failures.

Ranks run as threads of this process on loopback ports; no Spark, no JAX.
"""

from __future__ import annotations

import socket
import threading

import numpy as np
import pytest

from skol_spark.fit.distributed.ring import PeerLostError, Ring, free_port


def _ports(n: int) -> list[str]:
    return [f"127.0.0.1:{free_port('127.0.0.1')}" for _ in range(n)]


def _run(n: int, work, token: str = "secret") -> list:
    peers, results, errors = _ports(n), [None] * n, []

    def rank(r: int) -> None:
        try:
            ring = Ring(r, peers, token, timeout=30)
            try:
                results[r] = work(r, ring)
            finally:
                ring.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("ranks", [2, 3, 4])
def test_allreduce_sums_every_rank_and_every_rank_holds_the_same_bits(ranks):
    rng = np.random.default_rng(ranks)
    data = [(rng.normal(size=1001) * 10 ** rng.uniform(-3, 3, 1001)).astype(np.float32) for _ in range(ranks)]
    out = _run(ranks, lambda r, ring: ring.allreduce(data[r]))
    assert np.allclose(out[0], np.sum(data, axis=0, dtype=np.float64), rtol=1e-5, atol=1e-6)
    assert all(o.tobytes() == out[0].tobytes() for o in out)  # equal updates keep the weights equal
    assert all(d.dtype == np.float32 for d in data) and out[0].dtype == np.float32


def test_allreduce_of_fewer_values_than_ranks_and_of_none():
    assert _run(3, lambda r, ring: ring.allreduce(np.array([r + 1.0], np.float32))) == [np.array([6.0])] * 3
    empty = _run(2, lambda r, ring: ring.allreduce(np.zeros(0, np.float32)))
    assert [e.shape for e in empty] == [(0,), (0,)]


def test_work_given_to_allreduce_runs_once_while_this_ranks_values_are_already_on_their_way():
    # Rank 0's work waits for rank 1's whole all-reduce, which needs rank 0's values: they were sent first.
    # (4 kB: within any socket's first send buffer; larger sends go as far as the kernel's buffers take.)
    rank_one_done, waited = threading.Event(), []

    def work(r, ring):
        def meanwhile():
            waited.append(rank_one_done.wait(20) if r == 0 else True)

        out = ring.allreduce(np.full(1_000, r + 1.0, np.float32), meanwhile)
        if r == 1:
            rank_one_done.set()
        return out

    out = _run(2, work)
    assert waited.count(True) == 2  # rank 0 saw rank 1 finish before its own receive
    assert all(np.array_equal(o, np.full(1_000, 3.0, np.float32)) for o in out)


@pytest.mark.parametrize("ranks", [1, 3])
def test_work_given_to_allreduce_runs_once_at_any_number_of_ranks(ranks):
    calls = [0] * ranks

    def work(r, ring):
        def meanwhile():
            calls[r] += 1

        return ring.allreduce(np.array([r + 1.0], np.float32), meanwhile)

    out = _run(ranks, work) if ranks > 1 else [work(0, Ring(0, ["127.0.0.1:1"], "secret"))]
    assert calls == [1] * ranks
    assert all(o.tolist() == [ranks * (ranks + 1) / 2] for o in out)


def test_allgather_stacks_by_rank_and_keeps_the_dtype():
    out = _run(3, lambda r, ring: ring.allgather(np.array([[r, 10 * r]], np.int64) + 2**40))
    expected = np.array([[[0, 0]], [[1, 10]], [[2, 20]]], np.int64) + 2**40
    assert all(np.array_equal(o, expected) and o.dtype == np.int64 for o in out)


def test_one_rank_needs_no_connection():
    ring = Ring(0, ["127.0.0.1:1"], "secret")
    assert np.array_equal(ring.allreduce(np.arange(3, dtype=np.float32)), [0, 1, 2])
    assert ring.allgather(np.array([5])).tolist() == [[5]]


def test_a_connection_without_the_token_is_dropped():
    peers = _ports(2)
    done = {}

    def rank0() -> None:
        ring = Ring(0, peers, "secret", timeout=30)
        done["sum"] = ring.allreduce(np.ones(4, np.float32))
        ring.close()

    thread = threading.Thread(target=rank0)
    thread.start()
    host, port = peers[0].rsplit(":", 1)
    for _ in range(100):  # an intruder reaches rank 0's port first
        try:
            intruder = socket.create_connection((host, int(port)), timeout=5)
            break
        except OSError:
            threading.Event().wait(0.05)
    intruder.sendall(b"x" * 32)
    ring = Ring(1, peers, "secret", timeout=30)
    total = ring.allreduce(np.full(4, 2.0, np.float32))
    ring.close()
    thread.join(30)
    intruder.close()
    assert total.tolist() == done["sum"].tolist() == [3.0] * 4


def test_a_rank_that_goes_away_fails_the_others_collective():
    def work(r: int, ring: Ring):
        if r == 1:
            ring.close()  # gone before the collective
            return None
        with pytest.raises(PeerLostError, match="previous rank|next rank"):
            ring.allreduce(np.ones(1000, np.float32))
        return "raised"

    assert _run(2, work)[0] == "raised"
