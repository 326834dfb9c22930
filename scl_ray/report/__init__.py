"""`scl-ray report RESULTS`: paper-style figures and summary tables of a results directory.

    report_dir = make_report("~/scl-ray-results/scl")
    print(format_summary(report_dir))

writes into report_dir (default RESULTS/report, on the same storage as RESULTS: a local path or URI):
  <metric>_n<N>.png   per train size n and metric (fid, r_precision_top3, matching_score, diversity,
                      multimodality, physics/*): a panel per synthetic ratio, a line per arm (mean over
                      seeds; band: the 95% bootstrap interval, seeds' min and max dotted), the baseline
                      in every panel
  timing.png          mean seconds per generation by stage, per trial
  toy_w2.png          Gaussian toy: W2 vs generation, a line per gamma, a panel per corrector
  summary.csv         one row per trial (see tables.py); toy_summary.csv for toy runs
  summary.md          the tables above in Markdown, with the figures, and each corrected arm against the
                      self-consuming one of the same seed (paired.py: does correction stay closer to
                      the baseline?)

Metrics are comparable only when one evaluator scored them: a report of trials whose metrics.json
name different evaluators is refused (ReportError naming the trials behind each hash) unless
`allow_mixed_evaluators` is set; summary.csv's `evaluator` column names each trial's.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from scl_ray import storage
from scl_ray.report import figures, paired, tables
from scl_ray.report.metrics import reported_metrics
from scl_ray.report.results import Results, ReportError, check_evaluators, load_results
from scl_ray.report.tables import format_summary

SUMMARY_MD = "summary.md"
CI_NOTE = ("(CI ± h): h is the mean over seeds of the half-width of one evaluation's 95% bootstrap interval "
           "(evaluate.bootstrap resamples of its samples).\n\n")
PAIRED_NOTE = ("Per seed, the corrected loop's late value minus the self-consuming loop's (same n, λ and seed: "
               "the same generation 0); the gap to the baseline is |arm − baseline| of the same seed, and its change "
               "is negative when correction ends nearer to the baseline. Brackets: 95% Student-t intervals over "
               "seeds; \"closer\" or \"farther\" only when the interval excludes 0 (scl_ray/report/paired.py).\n\n")
__all__ = ["ReportError", "Results", "format_summary", "load_results", "make_report"]


def make_report(results_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                allow_mixed_evaluators: bool = False) -> str:
    """Write the figures and tables of every trial and toy run under `results_dir`; returns out_dir.

    results_dir: local path or pyarrow URI (s3://...). out_dir: local path or URI, default
    results_dir/report; a URI's files are drawn in a local temporary directory and then stored
    there (`storage.write_bytes`). allow_mixed_evaluators: show trials scored by different
    evaluators together instead of refusing (`check_evaluators`).
    """
    out_dir = storage.absolute(out_dir if out_dir is not None else storage.join(results_dir, "report"))
    if not storage.is_uri(out_dir):
        _write_report(results_dir, Path(out_dir), allow_mixed_evaluators)
        return out_dir
    with tempfile.TemporaryDirectory(prefix="scl-ray-report-") as staging:
        _write_report(results_dir, Path(staging), allow_mixed_evaluators)
        for path in sorted(Path(staging).iterdir()):
            storage.write_bytes(storage.join(out_dir, path.name), path.read_bytes())
    return out_dir


def _write_report(results_dir: str | os.PathLike, out_dir: Path, allow_mixed_evaluators: bool) -> None:
    results = load_results(results_dir)
    if not allow_mixed_evaluators:
        check_evaluators(results.trials)
    out_dir.mkdir(parents=True, exist_ok=True)
    evaluators = sorted({trial.evaluator for trial in results.trials if trial.evaluator})
    sections = [f"# scl-ray report\n\nResults: `{results_dir}`: {len(results.trials)} loop trials, "
                f"{len(results.toys)} toy runs."
                + (f" Evaluator{'s' if len(evaluators) > 1 else ''}: {', '.join(evaluators)}." if evaluators else "")]
    pictures: list[Path] = []
    if results.trials:
        metrics = reported_metrics(results.trials)
        rows = tables.trial_rows(results.trials, metrics)
        tables.write_csv(rows, out_dir / tables.SUMMARY_CSV)
        sections.append("## Final values, mean ± standard deviation over seeds\n\n" + CI_NOTE
                        + tables.seeds_markdown(results.trials, metrics))
        sections.append("## Late values (mean over the last quarter of the generations), mean ± standard "
                        "deviation over seeds\n\n" + CI_NOTE + tables.seeds_markdown(results.trials, metrics, "late"))
        comparison = paired.paired_markdown(results.trials, metrics)
        if comparison:
            sections.append("## Corrected against self-consuming, paired by seed (late values)\n\n" + PAIRED_NOTE
                            + comparison)
        sections.append("## Trials (final = last finished generation, best = over all generations)\n\n"
                        + tables.trials_markdown(rows))
        pictures += figures.metric_figures(results.trials, out_dir)
        timing = figures.timing_figure(results.trials, out_dir)
        pictures += [timing] if timing is not None else []
    if results.toys:
        rows = tables.toy_rows(results.toys)
        tables.write_csv(rows, out_dir / tables.TOY_CSV)
        sections.append("## Gaussian toy: final W2 to N(0, I)\n\n" + tables.markdown_table(
            ["corrector", "γ", "seeds", "W2 mean", "W2 std"], [list(row.values()) for row in rows]))
        pictures.append(figures.toy_figure(results.toys, out_dir))
    sections.append("## Figures\n\n" + "\n".join(f"![{path.stem}]({path.name})" for path in pictures))
    (out_dir / SUMMARY_MD).write_text("\n\n".join(sections) + "\n")

