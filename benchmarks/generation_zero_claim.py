"""The generation-0 claim: a storage lease (what the loop uses) against a Ray named actor.

Prints one JSON object and saves it to benchmarks/results/generation_zero_claim.json:

    python benchmarks/generation_zero_claim.py [--rounds 3] [--timeout-s 2] [--skip-ray]

For each way the holder is a separate process that claims and then is killed with SIGKILL (as Ctrl-C of
a sweep, an OOM kill or a lost node leaves it). Measured from the kill to the moment a waiter in this
process holds the claim:

- `lease_same_host_takeover_s`: the lease, holder on this host (its pid is gone: taken over at once).
- `lease_other_host_takeover_s`: the lease, holder seen as on another host (its heartbeat stops: taken
  over after the timeout). Run with `--timeout-s` (default 2 s) instead of the loop's 30 s; the result
  is timeout + at most one poll, so the loop's figure is 30 s + this minus 2 s.
- `actor_takeover_s`: a named Ray actor created by the holder (a Ray driver of its own; the actor
  fate-shares with its owner): how long until `ray.get_actor` no longer finds it and a waiter's
  actor of the same name is created.
- `lease_heartbeat_ms` / `actor_get_ms`: one heartbeat write; one `ray.get_actor` lookup (a waiter's poll).
The baseline is the lease's own same-host figure; `ratio` = actor / lease same host.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"

LEASE_HOLDER = """
import sys, time
from scl_ray.loop import lease
if sys.argv[2] == "other":
    lease.socket.gethostname = lambda: "another-host"
holder = lease.Lease(sys.argv[1], heartbeat_s=0.2, timeout_s=float(sys.argv[3]))
assert holder.acquire_or_wait(lambda: False)
print("held", flush=True)
time.sleep(3600)
"""

ACTOR_HOLDER = """
import sys, time, ray
ray.init(address=sys.argv[1], namespace="claim", logging_level="ERROR", log_to_driver=False)

@ray.remote(num_cpus=0)
class Claim:
    def holder(self):
        return "holder"

claim = Claim.options(name="gen0").remote()
ray.get(claim.holder.remote())
print("held", flush=True)
time.sleep(3600)
"""


def start_holder(script: str, *arguments: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", script, *arguments], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def kill(process: subprocess.Popen) -> float:
    process.send_signal(signal.SIGKILL)
    process.wait()
    return time.monotonic()


def lease_takeover(where: str, timeout_s: float) -> float:
    from scl_ray.loop.lease import Lease

    with tempfile.TemporaryDirectory() as directory:
        holder = start_holder(LEASE_HOLDER, directory, where, str(timeout_s))
        waiter = Lease(directory, heartbeat_s=0.2, timeout_s=timeout_s, poll_s=0.05, log=lambda line: None)
        killed = kill(holder)
        assert waiter.acquire_or_wait(lambda: False)
        took = time.monotonic() - killed
        waiter.release()
    return took


def heartbeat_ms(rounds: int = 200) -> float:
    from scl_ray import storage

    with tempfile.TemporaryDirectory() as directory:
        started = time.perf_counter()
        for beat in range(rounds):
            storage.write_text(f"{directory}/CLAIMED.0", json.dumps({"holder": "h", "beat": beat}))
        return (time.perf_counter() - started) / rounds * 1000


def actor_takeover(address: str) -> tuple[float, float]:
    import ray

    @ray.remote(num_cpus=0)
    class Claim:
        def holder(self):
            return "waiter"

    holder = start_holder(ACTOR_HOLDER, address)
    started = time.perf_counter()
    ray.get_actor("gen0", namespace="claim")
    get_ms = (time.perf_counter() - started) * 1000
    killed = kill(holder)
    while True:
        try:
            ray.get_actor("gen0", namespace="claim")
        except ValueError:
            try:
                claim = Claim.options(name="gen0", namespace="claim").remote()
                ray.get(claim.holder.remote())
                break
            except ValueError:  # a name still being released
                pass
        time.sleep(0.05)
    took = time.monotonic() - killed
    ray.kill(claim)
    while True:  # the name is free again for the next round
        try:
            ray.get_actor("gen0", namespace="claim")
            time.sleep(0.05)
        except ValueError:
            break
    return took, get_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout-s", type=float, default=2.0)
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    same = [lease_takeover("same", args.timeout_s) for _ in range(args.rounds)]
    other = [lease_takeover("other", args.timeout_s) for _ in range(args.rounds)]
    result = {
        "lease_same_host_takeover_s": round(statistics.median(same), 3),
        "lease_other_host_takeover_s": round(statistics.median(other), 3),
        "lease_timeout_s": args.timeout_s,
        "lease_heartbeat_ms": round(heartbeat_ms(), 3),
        "rounds": args.rounds,
    }
    if not args.skip_ray:
        import ray

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        context = ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level="ERROR",
                           log_to_driver=False, namespace="claim")
        try:
            measured = [actor_takeover(context.address_info["gcs_address"]) for _ in range(args.rounds)]
        finally:
            ray.shutdown()
        result["actor_takeover_s"] = round(statistics.median(m[0] for m in measured), 3)
        result["actor_get_ms"] = round(statistics.median(m[1] for m in measured), 3)
        result["ratio"] = round(result["actor_takeover_s"] / result["lease_same_host_takeover_s"], 2)
    result["machine"] = f"{len(os.sched_getaffinity(0))} cores, python {sys.version.split()[0]}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "generation_zero_claim.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
