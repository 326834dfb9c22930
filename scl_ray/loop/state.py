"""The run directory of one loop (README, "Results directory, TensorBoard and reports"), its DONE markers and resume.

```
<trial>/config.yaml
<trial>/gen_000/ model.pt  metrics.json  eval_samples.parquet  DONE
<trial>/gen_001/ model.pt  synthetic.parquet  corrected.parquet  metrics.json  DONE
```
Every file is written atomically and `DONE` last, so a generation directory without `DONE` is
unfinished and is redone from scratch on resume; finished ones are never rewritten. Once the next
generation is DONE, a generation's model.pt, synthetic.parquet and corrected.parquet are deleted
unless `loop.keep_all` (the sets are kept where `loop.accumulate`): see `SelfConsumingLoop._prune`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from scl_ray import storage
from scl_ray.loop.plan import generation_dir_name

DONE = "DONE"
METRICS = "metrics.json"
MODEL = "model.pt"
SYNTHETIC = "synthetic.parquet"
CORRECTED = "corrected.parquet"
EVAL_SAMPLES = "eval_samples.parquet"
# The one non-numeric entry of metrics.json: the hash of the evaluator that scored the generation.
EVALUATOR_METRIC = "evaluator"


@dataclass(frozen=True)
class TrialDirectory:
    """One loop's directory: a local path or a pyarrow URI."""

    root: str

    def __init__(self, root: str | os.PathLike):
        object.__setattr__(self, "root", str(root))

    def generation(self, generation: int) -> str:
        return storage.join(self.root, generation_dir_name(generation))

    def file(self, generation: int, name: str) -> str:
        return storage.join(self.generation(generation), name)

    def is_done(self, generation: int) -> bool:
        return storage.exists(self.file(generation, DONE))

    def mark_done(self, generation: int) -> None:
        storage.write_text(self.file(generation, DONE), time.strftime("%Y-%m-%dT%H:%M:%S%z\n"))

    def done_generations(self) -> list[int]:
        """Finished generations, ascending (gaps are not possible: each starts from the previous)."""
        done = []
        for name in storage.list_dir(self.root):
            if name.startswith("gen_") and name[4:].isdigit() and self.is_done(int(name[4:])):
                done.append(int(name[4:]))
        return sorted(done)

    def latest_done(self) -> int | None:
        """The newest finished generation, or None if none is (a fresh loop)."""
        done = self.done_generations()
        return done[-1] if done else None

    def write_metrics(self, generation: int, metrics: dict) -> None:
        storage.write_json(self.file(generation, METRICS), metrics)

    def read_metrics(self, generation: int) -> dict:
        return storage.read_json(self.file(generation, METRICS))

    def metrics_history(self) -> list[dict]:
        """metrics.json of every finished generation, in order."""
        return [self.read_metrics(generation) for generation in self.done_generations()]
