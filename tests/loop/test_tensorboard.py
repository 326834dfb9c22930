"""TrialLogger's event files, read back with TensorBoard's own loaders and its HParams backend."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from tensorboard import context as tb_context
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups
from tensorboard.plugins.hparams import metadata as hparams_metadata

from scl_ray.config import LoopConfig
from scl_ray.loop.tensorboard import IMAGE_TAG, TrialLogger, scalar_tag, trial_hparams


EVALUATOR = "0123456789abcdef"


def fake_metrics(generation: int, corrected: bool = True) -> dict[str, float]:
    metrics = {"generation": float(generation), "evaluator": EVALUATOR, "fid": 2.0 + generation, "r_precision_top3": 0.5 - 0.1 * generation,
               "physics/penetration": 0.01 * generation, "train/loss": 1.0 / (generation + 1),
               "time/train_s": 3.0}
    if corrected and generation > 0:
        metrics["correction/corrected"] = 10.0 + generation
    return metrics


def frame(generation: int) -> np.ndarray:
    """A (6, 8, 3) uint8 picture whose red channel says which generation it belongs to."""
    image = np.zeros((6, 8, 3), np.uint8)
    image[..., 0] = 40 * (generation + 1)
    return image


def hparams(synthetic_ratio: float, strength: float, seed: int = 0) -> dict:
    return trial_hparams(LoopConfig(synthetic_ratio=synthetic_ratio, strength=strength, train_size=64, seed=seed),
                         EVALUATOR)


def write_trial(trial_dir, synthetic_ratio=0.5, strength=1.0, generations=3, resume_at=2):
    """Log generations 0..resume_at-1, close, then re-open (a resume) and log the rest."""
    with TrialLogger(trial_dir, hparams(synthetic_ratio, strength)) as logger:
        for generation in range(resume_at):
            logger.log_generation(generation, fake_metrics(generation, strength > 0), frame(generation))
    with TrialLogger(trial_dir, hparams(synthetic_ratio, strength)) as logger:
        for generation in range(resume_at, generations):
            logger.log_generation(generation, fake_metrics(generation, strength > 0), frame(generation))


def summary_iterator(path: str):
    return EventFileLoader(path).Load()


def load(trial_dir) -> EventAccumulator:
    return EventAccumulator(str(trial_dir), size_guidance={"images": 0, "scalars": 0}).Reload()


def test_scalar_tags_group_evaluation_metrics_and_keep_other_prefixes():
    assert scalar_tag("fid") == "eval/fid"
    assert scalar_tag("physics/skate") == "physics/skate"
    assert scalar_tag("time/sample_s") == "time/sample_s"
    assert scalar_tag("fid_ci_low") == "ci/fid_ci_low"
    assert scalar_tag("physics/skate_mm_ci_high") == "ci/physics/skate_mm_ci_high"


def test_trial_hparams_name_the_arm():
    assert hparams(0.0, 1.0)["arm"] == "baseline"
    assert hparams(0.5, 0.0)["arm"] == "self-consuming"
    assert hparams(0.5, 1.0) == {"arm": "corrected", "synthetic_ratio": 0.5, "strength": 1.0,
                                 "train_size": 64, "seed": 0, "evaluator": EVALUATOR}
    assert "evaluator" not in trial_hparams(LoopConfig())


def test_three_generations_across_a_resume_read_back_in_order(tmp_path):
    write_trial(tmp_path / "trial")
    assert len(list((tmp_path / "trial").glob("events.out.tfevents.*"))) == 1  # one stream per trial
    events = load(tmp_path / "trial")
    for name in ("fid", "r_precision_top3", "physics/penetration", "train/loss", "time/train_s"):
        scalars = events.Scalars(scalar_tag(name))
        assert [s.step for s in scalars] == [0, 1, 2], name
        np.testing.assert_allclose([s.value for s in scalars],
                                   [fake_metrics(g)[name] for g in range(3)], rtol=1e-6)
    assert [s.step for s in events.Scalars("correction/corrected")] == [1, 2]
    for name in ("generation", "evaluator"):  # the step, and an HParam
        assert name not in events.Tags()["scalars"] and scalar_tag(name) not in events.Tags()["scalars"]
    images = events.Images(IMAGE_TAG)
    assert [image.step for image in images] == [0, 1, 2]
    for generation, image in enumerate(images):
        pixels = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB"))
        assert pixels.shape == (6, 8, 3) and (pixels[..., 0] == 40 * (generation + 1)).all()


def test_reruns_and_resumes_append_to_the_trials_one_event_file(tmp_path):
    """However often a trial is resumed, or rerun with nothing left to do, TensorBoard sees one file:
    one session start, each generation once."""
    write_trial(tmp_path / "trial", generations=2, resume_at=1)
    with TrialLogger(tmp_path / "trial", hparams(0.5, 1.0)):
        pass  # a rerun of a finished trial logs nothing new
    with TrialLogger(tmp_path / "trial", hparams(0.5, 1.0)) as logger:  # the sweep extended by one generation
        logger.log_generation(2, fake_metrics(2))
    (event_file,) = (tmp_path / "trial").glob("events.out.tfevents.*")
    events = load(tmp_path / "trial")
    assert [s.step for s in events.Scalars("eval/fid")] == [0, 1, 2]
    records = list(summary_iterator(str(event_file)))
    starts = [r for r in records for v in r.summary.value if v.tag == hparams_metadata.SESSION_START_INFO_TAG]
    assert len(starts) == 1 and sum(r.HasField("file_version") for r in records) == 1


def test_a_record_cut_short_is_dropped_before_appending(tmp_path):
    with TrialLogger(tmp_path, hparams(0.5, 1.0)) as logger:
        logger.log_generation(0, fake_metrics(0))
    (event_file,) = tmp_path.glob("events.out.tfevents.*")
    whole = event_file.read_bytes()
    event_file.write_bytes(whole + whole[-40:-3])  # a crash in the middle of writing a record
    with TrialLogger(tmp_path, hparams(0.5, 1.0)) as logger:
        logger.log_generation(1, fake_metrics(1))
    assert list(tmp_path.glob("events.out.tfevents.*")) == [event_file]
    assert event_file.read_bytes().startswith(whole)
    assert [s.step for s in load(tmp_path).Scalars("eval/fid")] == [0, 1]


def test_hparams_session_is_in_the_trials_own_event_files(tmp_path):
    write_trial(tmp_path / "trial")
    content = load(tmp_path / "trial").PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    assert hparams_metadata.EXPERIMENT_TAG not in content
    start = hparams_metadata.parse_session_start_info_plugin_data(content[hparams_metadata.SESSION_START_INFO_TAG])
    assert start.hparams["arm"].string_value == "corrected"
    assert start.hparams["synthetic_ratio"].number_value == 0.5
    assert start.hparams["train_size"].number_value == 64
    assert start.hparams["evaluator"].string_value == EVALUATOR
    end = hparams_metadata.parse_session_end_info_plugin_data(content[hparams_metadata.SESSION_END_INFO_TAG])
    assert end.status == api_pb2.STATUS_SUCCESS


def test_hparams_dashboard_lists_every_trial_with_its_final_metrics(tmp_path):
    """TensorBoard's own HParams backend: one session per trial, metrics at the last generation."""
    write_trial(tmp_path / "exp" / "corrected")
    write_trial(tmp_path / "exp" / "baseline", synthetic_ratio=0.0, strength=0.0, generations=2, resume_at=1)
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(tmp_path / "exp"))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(tmp_path / "exp"))
    context = backend_context.Context(base_plugin.TBContext(data_provider=provider, multiplexer=multiplexer))
    request = api_pb2.ListSessionGroupsRequest(start_index=0, slice_size=10,
                                               allowed_statuses=[api_pb2.STATUS_SUCCESS])
    response = list_session_groups.Handler(tb_context.RequestContext(), context, "", request).run()
    groups = {group.name: group for group in response.session_groups}
    assert set(groups) == {"corrected", "baseline"}
    assert groups["baseline"].hparams["arm"].string_value == "baseline"
    assert groups["corrected"].hparams["strength"].number_value == 1.0
    final = {group: {value.name.tag: value.value for value in groups[group].metric_values} for group in groups}
    assert final["corrected"]["eval/fid"] == pytest.approx(fake_metrics(2)["fid"])
    assert final["baseline"]["eval/fid"] == pytest.approx(fake_metrics(1)["fid"])
    assert final["corrected"]["correction/corrected"] == pytest.approx(12.0)
    assert "correction/corrected" not in final["baseline"]


def test_a_trial_that_raises_is_left_unended_so_its_resume_can_succeed(tmp_path):
    with pytest.raises(KeyError):
        with TrialLogger(tmp_path, hparams(0.5, 0.0)) as logger:
            logger.log_generation(0, fake_metrics(0))
            raise KeyError("the loop broke")
    content = load(tmp_path).PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    assert hparams_metadata.SESSION_END_INFO_TAG not in content
    with TrialLogger(tmp_path, hparams(0.5, 0.0)) as logger:
        logger.log_generation(1, fake_metrics(1))
    content = load(tmp_path).PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    end = hparams_metadata.parse_session_end_info_plugin_data(content[hparams_metadata.SESSION_END_INFO_TAG])
    assert end.status == api_pb2.STATUS_SUCCESS


def test_events_reach_a_uri_after_every_generation(tmp_path):
    uri = f"file://{tmp_path}/remote/trial"
    logger = TrialLogger(uri, hparams(0.5, 1.0))
    logger.log_generation(0, fake_metrics(0), frame(0))
    # Not closed yet: the generation must already be readable at the URI's location.
    assert [s.step for s in load(tmp_path / "remote" / "trial").Scalars("eval/fid")] == [0]
    logger.log_generation(1, fake_metrics(1))
    logger.close()
    with TrialLogger(uri, hparams(0.5, 1.0)) as logger:  # a resume appends to the uploaded file
        logger.log_generation(2, fake_metrics(2))
    assert len(list((tmp_path / "remote" / "trial").glob("events.out.tfevents.*"))) == 1
    events = load(tmp_path / "remote" / "trial")
    assert [s.step for s in events.Scalars("eval/fid")] == [0, 1, 2]
    assert hparams_metadata.SESSION_END_INFO_TAG in events.PluginTagToContent(hparams_metadata.PLUGIN_NAME)


def test_misuse_is_refused_with_the_reason(tmp_path):
    with pytest.raises(TypeError, match="'arm'"):
        TrialLogger(tmp_path, {"arm": ["corrected"]})
    with TrialLogger(tmp_path, hparams(0.5, 1.0)) as logger:
        logger.log_generation(3, fake_metrics(3))
        with pytest.raises(ValueError, match="generation 3 was logged after generation 3"):
            logger.log_generation(3, fake_metrics(3))
        with pytest.raises(TypeError, match="'fid' of generation 4"):
            logger.log_generation(4, {"fid": "1.2"})
        with pytest.raises(ValueError, match=r"\(H, W, 3 or 4\) uint8"):
            logger.log_generation(5, {}, np.zeros((6, 8, 3), np.float32))
    with pytest.raises(RuntimeError, match="closed"):
        logger.log_generation(6, fake_metrics(6))


def test_generation_logger_renders_the_samples_it_is_given_else_those_on_disk(tmp_path):
    """The image of a generation comes from its evaluation samples in memory; a generation whose
    samples the logger is not given (a reused generation 0) reads its eval_samples.parquet; no file, no image."""
    from scl_ray.loop.state import EVAL_SAMPLES, TrialDirectory
    from scl_ray.loop.tensorboard import GenerationLogger, render_sample_image
    from scl_ray.motion.store import MotionSet, write_motion_set

    features = np.random.default_rng(0).standard_normal((2, 12, 263)).astype(np.float32)
    features[0, 3] = np.nan  # the first finite motion is drawn
    samples = MotionSet(ids=["a", "b"], captions=[("first",), ("second",)], features=list(features),
                        source=["synthetic"] * 2, generation=[0] * 2, status=[""] * 2, stats=[{}, {}])
    write_motion_set(samples, TrialDirectory(tmp_path / "trial").file(0, EVAL_SAMPLES))
    logger = GenerationLogger(tmp_path / "trial", LoopConfig())
    logger(0, fake_metrics(0))  # from the file
    logger(1, fake_metrics(1), samples)  # from memory (generation 1 has no file)
    logger(2, fake_metrics(2))  # neither
    logger.close()
    images = load(tmp_path / "trial").Images(IMAGE_TAG)
    assert [image.step for image in images] == [0, 1]
    expected = render_sample_image(samples)
    for image in images:
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB")), expected)
