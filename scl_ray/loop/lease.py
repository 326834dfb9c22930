"""A claim that cannot outlive its holder: a lease in storage, refreshed by a heartbeat.

Loops that share a generation 0 (a sweep's arms, `loop/generation.py`) let one of them train it and
the others wait. The claim is a numbered file in the shared directory; the highest number is the
current one:

  <shared>/CLAIMED.0    {"holder": "host:pid:uuid", "beat": 17, "refreshed": <holder's time.time()>}
  <shared>/CLAIMED.1    a takeover of claim 0 (its holder stopped refreshing it)

The holder rewrites its file every `heartbeat_s` from a daemon thread (`beat` goes up by one). A
waiter judges liveness by its own clock, never by the holder's or the store's: a claim whose `beat`
has not changed for `timeout_s` is dead, and so is one the holder released (after an error) or
one held by a process of this host that no longer exists (a resumed run after Ctrl-C or SIGKILL
needs no wait). Taking over claim N is creating CLAIMED.<N+1> exclusively (`storage.create_exclusive`),
so of two waiters that both find N dead exactly one wins; the other waits on the winner.

Why a lease rather than a Ray named actor (which dies with its owner): it needs no Ray in the core,
works for any loop that shares a storage location (one node, many nodes, or several sweeps), and
costs one small write per heartbeat (measured in docs/cluster.md). A named actor would need a
detached lifetime to outlive one trial, and then it no longer dies with its holder.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from scl_ray import storage

PREFIX = "CLAIMED."
HEARTBEAT_S = 5.0
TIMEOUT_S = 30.0  # a dead holder is taken over within TIMEOUT_S + POLL_S of its last heartbeat
POLL_S = 1.0
LOG_EVERY_S = 30.0
RELEASED = "released"


def holder_id() -> str:
    """host:pid:uuid of this process (the uuid tells apart two processes that reused a pid)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _dead_here(holder: str) -> bool:
    """True when `holder` (host:pid:uuid) ran on this host and its process no longer exists."""
    host, _, rest = holder.partition(":")
    return storage.process_gone(host, rest.partition(":")[0])


@dataclass
class Claim:
    """The current claim as a waiter sees it."""

    epoch: int
    holder: str
    beat: int
    refreshed: float  # the holder's clock (for messages only)
    released: bool


class Lease:
    """Claim `directory` for this process, or wait for whoever holds it (see the module docstring)."""

    def __init__(self, directory: str, heartbeat_s: float | None = None, timeout_s: float | None = None,
                 poll_s: float | None = None, log_every_s: float | None = None, what: str = "the claim",
                 log: Callable[[str], None] = lambda line: print(line, flush=True)):
        """Times in seconds; None takes the module's HEARTBEAT_S, TIMEOUT_S, POLL_S and LOG_EVERY_S."""
        heartbeat_s = HEARTBEAT_S if heartbeat_s is None else heartbeat_s
        timeout_s = TIMEOUT_S if timeout_s is None else timeout_s
        poll_s = POLL_S if poll_s is None else poll_s
        log_every_s = LOG_EVERY_S if log_every_s is None else log_every_s
        if not heartbeat_s < timeout_s:
            raise ValueError(f"heartbeat_s ({heartbeat_s}) must be shorter than timeout_s ({timeout_s})")
        self.directory, self.what, self.log = directory, what, log
        self.heartbeat_s, self.timeout_s, self.poll_s, self.log_every_s = heartbeat_s, timeout_s, poll_s, log_every_s
        self.holder = holder_id()
        self.epoch: int | None = None
        self._beat = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _file(self, epoch: int) -> str:
        return storage.join(self.directory, f"{PREFIX}{epoch}")

    def _content(self, released: bool = False) -> str:
        return json.dumps({"holder": self.holder, "beat": self._beat, "refreshed": time.time(),
                           **({RELEASED: True} if released else {})}) + "\n"

    def current(self) -> Claim | None:
        """The claim with the highest number, or None if nobody has claimed yet."""
        epochs = [int(name[len(PREFIX):]) for name in storage.list_dir(self.directory)
                  if name.startswith(PREFIX) and name[len(PREFIX):].isdigit()]
        if not epochs:
            return None
        epoch = max(epochs)
        try:
            content = json.loads(storage.read_text(self._file(epoch)))
        except (FileNotFoundError, ValueError):  # being created right now: alive by definition
            return Claim(epoch, "?", -1, time.time(), False)
        return Claim(epoch, str(content.get("holder", "?")), int(content.get("beat", -1)),
                     float(content.get("refreshed", 0.0)), bool(content.get(RELEASED, False)))

    def try_acquire(self, epoch: int) -> bool:
        """Create claim `epoch` (0 for a first claim, N + 1 to take over N); True if this process won."""
        if not storage.create_exclusive(self._file(epoch), self._content()):
            return False
        self.epoch = epoch
        self._stop.clear()
        self._thread = threading.Thread(target=self._heartbeat, name="scl-ray-lease", daemon=True)
        self._thread.start()
        return True

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            self._beat += 1
            try:
                storage.write_text(self._file(self.epoch), self._content())
            except OSError as error:  # a flaky store: the next beat tries again; waiters allow TIMEOUT_S
                self.log(f"{self.what}: could not refresh the lease {self._file(self.epoch)}: {error}")

    def release(self) -> None:
        """Stop the heartbeat and mark the claim released (waiters take over at once)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        claim = self.current()
        if claim is not None and claim.epoch == self.epoch and claim.holder == self.holder:
            storage.write_text(self._file(self.epoch), self._content(released=True))

    def acquire_or_wait(self, finished: Callable[[], bool]) -> bool:
        """True once this process holds the claim (it must `release` it), False once `finished()`
        (whoever held it is done). Logs what it waits for, then again every `log_every_s`."""
        seen: tuple[int, str, int] | None = None
        changed = time.monotonic()
        logged = -float("inf")
        while True:
            if finished():
                return False
            claim = self.current()
            if claim is None:
                if self.try_acquire(0):
                    return True
                continue
            now = time.monotonic()
            if (claim.epoch, claim.holder, claim.beat) != seen:
                seen, changed = (claim.epoch, claim.holder, claim.beat), now
            if claim.released or now - changed >= self.timeout_s or _dead_here(claim.holder):
                if finished():
                    return False
                if self.try_acquire(claim.epoch + 1):
                    self.log(f"{self.what}: took over the claim of {claim.holder} "
                             f"({'released' if claim.released else 'holder gone'})")
                    return True
                continue
            if now - logged >= self.log_every_s:
                ago = max(0.0, time.time() - claim.refreshed)
                self.log(f"waiting for {self.what}, held by {claim.holder}, lease refreshed {ago:.0f}s ago")
                logged = now
            time.sleep(self.poll_s)
