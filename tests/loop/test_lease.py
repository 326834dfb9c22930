"""The generation-0 claim: a lease a dead holder cannot keep, one winner per takeover, and a waiter that says why."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from scl_ray import storage
from scl_ray.loop.lease import Lease, holder_id

# Short enough for a unit test, long enough that a holder starved of CPU for a moment (2 cores, a load of
# 60 measured while these were written) still refreshes in time.
FAST = {"heartbeat_s": 0.1, "timeout_s": 2.0, "poll_s": 0.02}


def dead(lease: Lease) -> None:
    """The holder stops refreshing without releasing (as a killed process or a lost node would)."""
    lease._stop.set()
    lease._thread.join()


def test_a_dead_holder_is_taken_over_after_the_timeout(tmp_path):
    holder, waiter = Lease(str(tmp_path), **FAST), Lease(str(tmp_path), **FAST)
    assert holder.acquire_or_wait(lambda: False)
    dead(holder)
    started = time.monotonic()
    assert waiter.acquire_or_wait(lambda: False)
    waited = time.monotonic() - started
    assert FAST["timeout_s"] <= waited < FAST["timeout_s"] + 5
    claim = waiter.current()
    assert (claim.epoch, claim.holder) == (1, waiter.holder)
    waiter.release()


def test_a_live_holder_is_not_taken_over(tmp_path):
    holder, waiter = Lease(str(tmp_path), **FAST), Lease(str(tmp_path), **FAST)
    assert holder.acquire_or_wait(lambda: False)
    finished = threading.Event()
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(waiter.acquire_or_wait(finished.is_set)))
    thread.start()
    time.sleep(2 * FAST["timeout_s"])
    assert thread.is_alive() and holder.current().holder == holder.holder
    finished.set()  # the holder published its result
    thread.join(5)
    assert outcome == [False]
    holder.release()


def test_of_two_waiters_on_a_dead_claim_exactly_one_takes_over(tmp_path):
    holder = Lease(str(tmp_path), **FAST)
    assert holder.acquire_or_wait(lambda: False)
    dead(holder)
    finished = threading.Event()
    waiters = [Lease(str(tmp_path), **FAST) for _ in range(2)]
    outcomes = {}
    threads = [threading.Thread(target=lambda w=w: outcomes.__setitem__(w.holder, w.acquire_or_wait(finished.is_set)))
               for w in waiters]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while not outcomes and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(2 * FAST["timeout_s"])  # the loser keeps waiting: the winner's lease is alive
    assert list(outcomes.values()) == [True]
    finished.set()
    for thread in threads:
        thread.join(5)
    assert sorted(outcomes.values()) == [False, True]
    winner = next(w for w in waiters if outcomes[w.holder])
    assert winner.current().holder == winner.holder and winner.current().epoch == 1
    winner.release()


def test_a_takeover_has_one_winner_among_many_at_once(tmp_path):
    leases = [Lease(str(tmp_path), **FAST) for _ in range(8)]
    barrier = threading.Barrier(len(leases))
    won = []

    def take(lease):
        barrier.wait()
        if lease.try_acquire(1):
            won.append(lease)

    threads = [threading.Thread(target=take, args=(lease,)) for lease in leases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    won[0].release()


def test_a_claim_of_a_process_gone_from_this_host_is_taken_over_at_once(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    host, _, rest = holder_id().partition(":")
    storage.write_text(str(tmp_path / "CLAIMED.0"), json.dumps({"holder": f"{host}:{gone.stdout.strip()}:x", "beat": 3,
                                                                "refreshed": time.time()}))
    waiter = Lease(str(tmp_path), heartbeat_s=5, timeout_s=600, poll_s=0.02)
    started = time.monotonic()
    assert waiter.acquire_or_wait(lambda: False)
    assert time.monotonic() - started < 5
    waiter.release()


def test_a_released_claim_is_taken_over_at_once(tmp_path):
    holder, waiter = Lease(str(tmp_path), heartbeat_s=5, timeout_s=600), Lease(str(tmp_path), poll_s=0.02)
    assert holder.acquire_or_wait(lambda: False)
    holder.release()  # e.g. its training raised
    started = time.monotonic()
    assert waiter.acquire_or_wait(lambda: False)
    assert time.monotonic() - started < 5
    waiter.release()


def test_a_waiter_says_what_it_waits_for_once_and_then_every_interval(tmp_path):
    holder = Lease(str(tmp_path), **FAST)
    assert holder.acquire_or_wait(lambda: False)
    lines = []
    waiter = Lease(str(tmp_path), **FAST, log_every_s=1.0, what="generation 0 of gen0_abc", log=lines.append)
    stop = time.monotonic() + 2.5
    assert not waiter.acquire_or_wait(lambda: time.monotonic() > stop)
    holder.release()
    assert 2 <= len(lines) <= 3, lines  # at 0, 1 and 2 s (a late poll may miss the last), not every poll
    assert lines[0].startswith(f"waiting for generation 0 of gen0_abc, held by {holder.holder}, lease refreshed ")
    assert lines[0].endswith("s ago")


def test_a_loop_takes_over_the_generation_zero_of_a_loop_whose_training_failed(tmp_path):
    """The holder's error releases the claim: the waiting loop trains generation 0 itself, at once."""
    from scl_ray.config import LoopConfig
    from scl_ray.loop.generation import SelfConsumingLoop
    from scl_ray.loop.state import TrialDirectory

    from tests.loop.test_generation import MeanModel, Values, make_parts

    entered = threading.Event()

    class FailingModel(MeanModel):
        def train(self, items, steps, seed):
            entered.set()
            time.sleep(0.5)
            raise RuntimeError("out of memory")

    real = Values(np.linspace(0, 1, 20))
    shared = str(tmp_path / "_shared" / "gen0")
    loop = LoopConfig(generations=0, train_size=20)
    first_parts, second_parts = make_parts(FailingModel(), real), make_parts(MeanModel(), real)
    first_parts.shared_generation_zero = second_parts.shared_generation_zero = shared
    errors = []

    def first_loop():
        try:
            SelfConsumingLoop(loop, 10, first_parts, TrialDirectory(tmp_path / "a")).run()
        except RuntimeError as error:
            errors.append(error)

    first = threading.Thread(target=first_loop)
    first.start()
    entered.wait(10)
    started = time.monotonic()
    SelfConsumingLoop(loop, 10, second_parts, TrialDirectory(tmp_path / "b")).run()
    first.join()
    assert [str(error) for error in errors] == ["out of memory"]
    assert second_parts.model.trained_sizes == [20]
    assert time.monotonic() - started < 10  # not the lease timeout (30 s)
    assert storage.exists(str(tmp_path / "_shared" / "gen0" / "DONE"))


def test_create_exclusive_on_a_file_uri_is_exclusive(tmp_path):
    location = f"file://{tmp_path}/CLAIMED.0"
    assert storage.create_exclusive(location, "first\n")
    assert not storage.create_exclusive(location, "second\n")
    assert storage.read_text(location) == "first\n"


def test_a_heartbeat_shorter_than_the_timeout_is_required(tmp_path):
    with pytest.raises(ValueError, match="heartbeat_s"):
        Lease(str(tmp_path), heartbeat_s=30, timeout_s=10)
