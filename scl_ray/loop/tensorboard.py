"""TensorBoard logs of one loop: per-generation scalars, a rendered sample, and the HParams session.

Everything goes into the trial's own directory, so `tensorboard --logdir <storage>/<experiment>`
shows one run per trial:

  <trial>/events.out.tfevents.<seconds>.<host>.<nanoseconds>

- Scalars at step = generation, grouped by prefix: evaluation metrics (unprefixed in metrics.json)
  under `eval/`, the rest keep their own prefix (`physics/`, `correction/`, `synthetic/`, `train/`,
  `time/`), and the bounds of every metric's confidence interval under `ci/` (`ci/fid_ci_low`,
  `ci/physics/skate_mm_ci_high`), so the metric groups stay as readable as without them.
- One image per generation (`samples/motion`), e.g. a rendered evaluation motion.
- The HParams dashboard: each trial writes its session start (the swept values, and the hash of the
  evaluator that scores it, which metrics.json also carries) into its own event file; the dashboard's metric columns are the trials' scalars, shown at their latest generation, so
  the final metrics need no second copy. No experiment summary is written: TensorBoard uses the first
  one it finds for *every* run, so one trial's summary would hide the metrics and the hparam range of
  the others; without one, TensorBoard builds it from all sessions.

Events are written synchronously (tensorboardX's record writer and summary protos, without its
background queue), so a generation is on disk when `log_generation` returns. A trial has one event
file however often it is resumed or rerun: a re-opened logger appends to the trial's newest event
file (cut back to its last whole record, should a write have been cut short), after the HParams
session start already there; the caller passes only generations not logged before (a loop logs a
generation after its DONE marker, and a resume starts after the newest DONE). The HParams session
ends (status Success) when the logger is closed without an error; until then it shows as Unknown. A trial directory on
object storage (s3://, any pyarrow URI) is written to a local staging file (a copy of the existing
event file, if any) that is uploaded after every generation.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import tempfile
import time
from collections.abc import Mapping

import numpy as np
from tensorboardX import summary
from tensorboardX.proto.api_pb2 import Status
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData, SessionEndInfo
from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboardX.record_writer import RecordWriter, masked_crc32c

from scl_ray import storage
from scl_ray.config import LoopConfig
from scl_ray.evaluation.metrics import is_interval
from scl_ray.loop.plan import arm_name
from scl_ray.loop.state import EVAL_SAMPLES, EVALUATOR_METRIC, TrialDirectory
from scl_ray.motion.store import MotionSet, read_motion_set

IMAGE_TAG = "samples/motion"
EVAL_PREFIX = "eval"
CI_PREFIX = "ci"
HPARAMS_PLUGIN = "hparams"
SESSION_END_TAG = "_hparams_/session_end_info"


def scalar_tag(name: str) -> str:
    """TensorBoard tag of a metrics.json key: `fid` -> `eval/fid`; `physics/float` stays as is; a
    confidence interval's bound goes to its own group, `fid_ci_low` -> `ci/fid_ci_low`."""
    if is_interval(name):
        return f"{CI_PREFIX}/{name}"
    return name if "/" in name else f"{EVAL_PREFIX}/{name}"


def trial_hparams(loop: LoopConfig, evaluator: str | None = None) -> dict[str, float | int | str]:
    """The swept values of one loop, and the hash of its evaluator, as shown in TensorBoard's HParams dashboard."""
    hparams: dict[str, float | int | str] = {
        "arm": arm_name(loop.synthetic_ratio, loop.strength),
        "synthetic_ratio": loop.synthetic_ratio,
        "strength": loop.strength,
        "train_size": loop.train_size,
        "seed": loop.seed,
    }
    if evaluator is not None:
        hparams[EVALUATOR_METRIC] = evaluator
    return hparams


EVENT_FILE_PREFIX = "events.out.tfevents."


def event_file_name(now_ns: int) -> str:
    """TensorBoard's naming; the nanosecond suffix keeps two files opened in one second apart and in order."""
    return f"{EVENT_FILE_PREFIX}{now_ns // 10**9:010d}.{socket.gethostname()}.{now_ns}"


def whole_records_length(content: bytes) -> int:
    """The length of the prefix of an event file that holds whole records (TFRecord framing: 8-byte
    length, 4-byte length CRC, data, 4-byte data CRC); a record cut short by a crash is left out."""
    end = 0
    while end + 12 <= len(content):
        (length,) = struct.unpack("<Q", content[end:end + 8])
        if struct.unpack("<I", content[end + 8:end + 12])[0] != masked_crc32c(content[end:end + 8]):
            break
        record_end = end + 12 + length + 4
        if record_end > len(content):
            break
        data = content[end + 12:end + 12 + length]
        if struct.unpack("<I", content[record_end - 4:record_end])[0] != masked_crc32c(data):
            break
        end = record_end
    return end


class _AppendingRecordWriter(RecordWriter):
    """tensorboardX's record writer, opening its file for appending (its own truncates it)."""

    def __init__(self, path: str):
        self._name_to_tf_name, self._tf_names = {}, set()
        self.path = path
        self._writer = open(path, "ab")


class TrialLogger:
    """Writes one trial's TensorBoard events; use as a context manager or call `close()`.

    trial_dir: the trial's directory (local path or URI). hparams: name -> str, bool, int or float,
    e.g. `trial_hparams(config.loop)`.
    """

    def __init__(self, trial_dir: str | os.PathLike, hparams: Mapping[str, object]):
        for name, value in hparams.items():
            if not isinstance(value, (str, bool, int, float)):
                raise TypeError(f"hparam {name!r} is {type(value).__name__} ({value!r}); TensorBoard's "
                                "HParams dashboard takes only str, bool, int or float values")
        self.trial_dir = str(trial_dir)
        earlier = [name for name in storage.list_dir(self.trial_dir) if name.startswith(EVENT_FILE_PREFIX)]
        name = earlier[-1] if earlier else event_file_name(time.time_ns())
        self.event_file = storage.join(self.trial_dir, name)
        if storage.is_uri(self.trial_dir):
            self._staging: str | None = tempfile.mkdtemp(prefix="scl-ray-tensorboard-")
            local = os.path.join(self._staging, name)
        else:
            self._staging = None
            storage.make_dirs(self.trial_dir)
            local = self.event_file
        content = storage.read_bytes(self.event_file) if earlier else b""
        whole = whole_records_length(content)
        if self._staging is not None or whole < len(content):
            with open(local, "wb") as handle:
                handle.write(content[:whole])
        self._records = _AppendingRecordWriter(local)
        if not whole:  # a new event file: its header and the HParams session start (a resume has them)
            self._write(Event(file_version="brain.Event:2"))
            _, session_start, _ = summary.hparams(dict(hparams), {})
            self._write(Event(summary=session_start))
            self._flush()
        self._last_generation: int | None = None
        self._closed = False

    def log_generation(self, generation: int, metrics: Mapping[str, float],
                       image: np.ndarray | None = None) -> None:
        """Log one finished generation at step `generation`.

        metrics: metrics.json of the generation (name -> number; `generation` itself is the step, and the
        evaluator's hash is an HParam, not a scalar).
        image: (H, W, 3) or (H, W, 4) uint8, e.g. a rendered motion; None logs no image.
        """
        if self._closed:
            raise RuntimeError(f"the TensorBoard logger of {self.trial_dir} is closed")
        if self._last_generation is not None and generation <= self._last_generation:
            raise ValueError(f"generation {generation} was logged after generation {self._last_generation} "
                             f"in {self.trial_dir}: log each generation once, in increasing order")
        values = []
        for name, value in metrics.items():
            if name in ("generation", EVALUATOR_METRIC):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise TypeError(f"metric {name!r} of generation {generation} in {self.trial_dir} is "
                                f"{type(value).__name__} ({value!r}); metrics must be numbers")
            values.extend(summary.scalar(scalar_tag(name), float(value)).value)
        if image is not None:
            image = np.asarray(image)
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
                raise ValueError(f"the image of generation {generation} must be (H, W, 3 or 4) uint8, "
                                 f"got {image.shape} {image.dtype}")
            values.extend(summary.image(IMAGE_TAG, image, dataformats="HWC").value)
        self._write(Event(step=int(generation), summary=Summary(value=values)))
        self._flush()
        self._last_generation = generation

    def close(self) -> None:
        """End the HParams session as a success and close the event file."""
        self._finish(end_session=True)

    def __enter__(self) -> "TrialLogger":
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        # A loop that raised may be resumed: TensorBoard keeps the first session end it reads for a
        # run, so a failure written now would outlive a later success. Unended sessions show as Unknown.
        self._finish(end_session=error_type is None)

    def _finish(self, end_session: bool) -> None:
        if self._closed:
            return
        if end_session:
            content = HParamsPluginData(session_end_info=SessionEndInfo(
                status=Status.Value("STATUS_SUCCESS"), end_time_secs=time.time()))
            metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(
                plugin_name=HPARAMS_PLUGIN, content=content.SerializeToString()))
            self._write(Event(summary=Summary(value=[Summary.Value(tag=SESSION_END_TAG, metadata=metadata)])))
            self._flush()
        self._records.close()
        self._closed = True
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)

    def _write(self, event: Event) -> None:
        event.wall_time = time.time()
        self._records.write(event.SerializeToString())

    def _flush(self) -> None:
        """Make the events readable: on the local disk, or uploaded whole to object storage."""
        self._records.flush()
        if self._staging is not None:
            with open(self._records.path, "rb") as handle:
                storage.write_bytes(self.event_file, handle.read())


def render_sample_image(samples: MotionSet, frames: int = 5) -> np.ndarray | None:
    """The first finite motion of a generation's evaluation samples as an (H, W, 3) uint8 contact
    sheet, or None if none is finite."""
    from PIL import Image

    from scl_ray.motion.features import features_to_joints
    from scl_ray.motion.render import render_png

    finite = np.flatnonzero(samples.finite_mask())
    if not len(finite):
        return None
    first = int(finite[0])
    with tempfile.TemporaryDirectory() as folder:
        path = render_png([features_to_joints(samples.features[first])], [samples.captions[first][0]],
                          os.path.join(folder, "sample.png"), frames_per_motion=frames, dpi=60)
        return np.asarray(Image.open(path).convert("RGB"))


class GenerationLogger:
    """What a loop's `report` calls on rank 0: scalars, HParams and a rendered evaluation sample."""

    def __init__(self, trial_dir: str | os.PathLike, loop: LoopConfig, render: bool = True,
                 evaluator: str | None = None):
        self.logger = TrialLogger(trial_dir, trial_hparams(loop, evaluator))
        self.trial_dir = str(trial_dir)
        self.render = render

    def __call__(self, generation: int, metrics: Mapping[str, float], samples: MotionSet | None = None) -> None:
        """samples: the generation's evaluation samples, as the loop evaluated them; None (a generation 0
        reused from the sweep's shared one, which this process did not evaluate) reads them from the
        generation's eval_samples.parquet, if there is one."""
        image = None
        if self.render:
            if samples is None:
                location = TrialDirectory(self.trial_dir).file(generation, EVAL_SAMPLES)
                samples = read_motion_set(location) if storage.exists(location) else None
            image = render_sample_image(samples) if samples is not None else None
        self.logger.log_generation(generation, metrics, image)

    def close(self) -> None:
        self.logger.close()
