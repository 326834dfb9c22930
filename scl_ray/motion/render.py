"""Stick-figure pictures of motions: a PNG contact sheet and an animated GIF.

Joints are (T, 22, 3) arrays in metres, y up (the skeleton's convention). Figures are drawn with
matplotlib's object API on an Agg canvas, so nothing needs a screen and no pyplot state is touched.
Every view follows its figure's pelvis over a fixed-size floor square, so all frames share one scale
and a body walking away shows as the floor grid and the root's path sliding under it.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from matplotlib.animation import PillowWriter
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mpl_toolkits.mplot3d.art3d import Poly3DCollection

from scl_ray.errors import UserError
from scl_ray.motion import features as motion_features
from scl_ray.motion import humanml3d
from scl_ray.motion.constants import FPS
from scl_ray.motion.skeleton import JOINT, JOINT_NAMES, KINEMATIC_CHAINS, NUM_JOINTS

# Right side warm, left side cool, so a mirrored motion is visibly different. Keyed by the chain's
# end joint so the colour follows the chain's meaning, not its position in KINEMATIC_CHAINS.
CHAIN_COLOURS = {
    "right_foot": "#d62728",
    "left_foot": "#1f77b4",
    "head": "#333333",
    "right_wrist": "#ff7f0e",
    "left_wrist": "#17becf",
}
SIDE_LEGEND = "left: blue / cyan    right: red / orange"
FLOOR_GRID_SPACING = 0.5  # metres
FLOOR_COLOUR = "#bbbbbb"  # grid lines
FLOOR_FILL = "#eeeeee"
PATH_COLOUR = "#888888"
# A 3/4 view from the front-left of a body facing +z (see _to_plot for the axis mapping).
VIEW_ELEVATION, VIEW_AZIMUTH = 20.0, -60.0
VIEW_ZOOM = 1.2  # fills the cell while keeping the floor square's near corner in it
# Splits tried in order when load_motions is given a HumanML3D directory and no ids.
SPLIT_ORDER = ("test", "val", "train", "all")


def render_png(
    motions: Sequence[np.ndarray],
    captions: Sequence[str],
    out_path: str | os.PathLike,
    frames_per_motion: int = 6,
    fps: float = FPS,
    dpi: int = 100,
) -> Path:
    """Draw a contact sheet: one row per motion, `frames_per_motion` evenly spaced frames.

    motions: list of (T_i, 22, 3) joint arrays, metres, y up; captions: one row title per motion;
    fps: frame rate of the motions, for the time under each frame. Writes atomically; returns the path.
    """
    motions = _checked_motions(motions, captions)
    if frames_per_motion < 1:
        raise ValueError(f"frames_per_motion must be at least 1, got {frames_per_motion}")
    frame = _ViewFrame.enclosing(motions)
    cell_width, cell_height = 2.2, 2.4
    figure = Figure(figsize=(frames_per_motion * cell_width, len(motions) * cell_height))
    FigureCanvasAgg(figure)
    rows = figure.subfigures(len(motions), 1, squeeze=False)[:, 0]
    for row, joints, caption in zip(rows, motions, captions):
        row.suptitle(_wrap(caption, 20 * frames_per_motion), fontsize=10)
        row.subplots_adjust(left=0.0, right=1.0, bottom=0.0, top=0.85, wspace=0.0)
        shown = np.linspace(0, len(joints) - 1, frames_per_motion).round().astype(int)
        for column, index in enumerate(shown):
            axes = row.add_subplot(1, frames_per_motion, column + 1, projection="3d")
            _StickFigureView(axes, joints, frame).show(index)
            axes.set_title(f"{index / fps:.2f} s", fontsize=8, y=0.95)
    rows[0].text(0.995, 0.995, SIDE_LEGEND, ha="right", va="top", fontsize=8)
    with _atomic_path(out_path) as temporary:
        figure.savefig(temporary, format="png", dpi=dpi)
    return Path(out_path)


def render_gif(
    motions: Sequence[np.ndarray],
    captions: Sequence[str],
    out_path: str | os.PathLike,
    fps: float = FPS,
    max_frames: int = 200,
    dpi: int = 72,
) -> Path:
    """Animate motions side by side (one column each) into a looping GIF.

    motions: list of (T_i, 22, 3) joint arrays, metres, y up, at `fps` frames per second; a shorter
    motion holds its last frame. Longer than `max_frames`, every k-th frame is kept (and the GIF's frame
    rate divided by k) so it still plays in real time. Writes atomically; returns the path.
    """
    motions = _checked_motions(motions, captions)
    if max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")
    longest = max(len(joints) for joints in motions)
    stride = math.ceil(longest / max_frames)
    frame = _ViewFrame.enclosing(motions)
    figure = Figure(figsize=(2.6 * len(motions), 3.0))
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=0.0, right=1.0, bottom=0.0, top=0.85, wspace=0.0)
    views = []
    for column, (joints, caption) in enumerate(zip(motions, captions)):
        axes = figure.add_subplot(1, len(motions), column + 1, projection="3d")
        axes.set_title(_wrap(caption, 28), fontsize=8)
        views.append(_StickFigureView(axes, joints, frame))
    clock = figure.text(0.01, 0.01, "", fontsize=8)
    figure.text(0.99, 0.01, SIDE_LEGEND, ha="right", fontsize=7)
    writer = PillowWriter(fps=fps / stride)
    with _atomic_path(out_path) as temporary, writer.saving(figure, temporary, dpi):
        for index in range(0, longest, stride):
            for view in views:
                view.show(index)
            clock.set_text(f"{index / fps:.2f} s")
            writer.grab_frame()
    return Path(out_path)


def load_motions(
    path: str | os.PathLike, ids: Sequence[str] | None = None, limit: int = 4
) -> tuple[list[np.ndarray], list[str], list[str]]:
    """Read motions to draw from a HumanML3D directory or a Parquet motion set (path or URI).

    Without `ids`, the first `limit` motions are taken (of the first split file present, in the order
    test, val, train, all, for a directory). Returns joints (T_i, 22, 3) metres recovered from the
    features, the first caption of each motion (its id when it has none), and the ids.
    """
    if os.path.isdir(path):
        features, captions, ids = _read_humanml3d(Path(path), ids, limit)
    else:
        features, captions, ids = _read_motion_set(str(path), ids, limit)
    joints = [np.asarray(motion_features.features_to_joints(f), dtype=np.float64) for f in features]
    return joints, captions, ids


def _read_humanml3d(root: Path, ids: Sequence[str] | None, limit: int):
    if ids is None:
        split = next((name for name in SPLIT_ORDER if (root / f"{name}.txt").is_file()), None)
        if split is None:
            raise FileNotFoundError(
                f"{root} has no split file ({', '.join(f'{name}.txt' for name in SPLIT_ORDER)}); "
                "pass the motion ids to draw"
            )
        ids = humanml3d.read_split(root, split)[:limit]
    records = [humanml3d.read_motion(root, motion_id) for motion_id in ids]
    captions = [record.captions[0].text if record.captions else record.id for record in records]
    return [record.features for record in records], captions, [record.id for record in records]


def _read_motion_set(uri: str, ids: Sequence[str] | None, limit: int):
    # Imported here: pyarrow is only needed when drawing from a Parquet file.
    from scl_ray.motion import store

    motion_set = store.read_motion_set(uri)
    if ids is None:
        indices = list(range(min(limit, len(motion_set.ids))))
    else:
        position: dict[str, int] = {}
        for index, motion_id in enumerate(motion_set.ids):
            position.setdefault(motion_id, index)  # ids may repeat in a set: take the first
        missing = [motion_id for motion_id in ids if motion_id not in position]
        if missing:
            raise UserError(
                f"{uri} has no motion with id {', '.join(missing)}; "
                f"it holds {len(position)} motions, e.g. {', '.join(list(position)[:3])}"
            )
        indices = [position[motion_id] for motion_id in ids]
    captions = [
        motion_set.captions[i][0] if motion_set.captions[i] else motion_set.ids[i] for i in indices
    ]
    return [motion_set.features[i] for i in indices], captions, [motion_set.ids[i] for i in indices]


def _checked_motions(motions: Sequence[np.ndarray], captions: Sequence[str]) -> list[np.ndarray]:
    """Float64 copies of the motions, or an error naming the first bad one."""
    if len(motions) == 0:
        raise ValueError("nothing to draw: the list of motions is empty")
    if len(captions) != len(motions):
        raise ValueError(f"got {len(motions)} motions but {len(captions)} captions; give one caption each")
    checked = []
    for index, (joints, caption) in enumerate(zip(motions, captions)):
        joints = np.asarray(joints, dtype=np.float64)
        where = f"motion {index} ({caption!r})"
        if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3) or joints.shape[0] < 1:
            raise ValueError(
                f"{where} has shape {joints.shape}; expected (T, {NUM_JOINTS}, 3) joint positions "
                "in metres, y up, with T >= 1 (convert features with features_to_joints first)"
            )
        bad_frames = np.flatnonzero(~np.isfinite(joints).all(axis=(1, 2)))
        if bad_frames.size:
            raise ValueError(f"{where} has NaN or infinite joints in frames {bad_frames[:10].tolist()}")
        checked.append(joints)
    return checked


class _ViewFrame:
    """The box every view shows: a square of half-width `radius` around the pelvis, floor to top."""

    def __init__(self, radius: float, bottom: float, top: float):
        self.radius, self.bottom, self.top = radius, bottom, top

    @classmethod
    def enclosing(cls, motions: list[np.ndarray]) -> _ViewFrame:
        reach = max(
            np.linalg.norm((joints - joints[:, JOINT["pelvis"] : JOINT["pelvis"] + 1])[..., [0, 2]], axis=-1).max()
            for joints in motions
        )
        lowest = min(joints[..., 1].min() for joints in motions)
        highest = max(joints[..., 1].max() for joints in motions)
        return cls(radius=max(reach + 0.2, 0.6), bottom=min(lowest, 0.0), top=max(highest, 1.0) + 0.1)


def _to_plot(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Our (x, y up, z) to matplotlib's (X, Y, Z up) by a rotation (x, -z, y), never a mirror."""
    return points[..., 0], -points[..., 2], points[..., 1]


class _StickFigureView:
    """One 3D axes showing one motion; `show(frame)` only moves existing artists (cheap per frame)."""

    def __init__(self, axes, joints: np.ndarray, frame: _ViewFrame):
        self.axes, self.joints, self.frame = axes, joints, frame
        axes.set_axis_off()
        axes.view_init(elev=VIEW_ELEVATION, azim=VIEW_AZIMUTH)
        axes.set_box_aspect((2 * frame.radius, 2 * frame.radius, frame.top - frame.bottom), zoom=VIEW_ZOOM)
        axes.set_zlim(frame.bottom, frame.top)
        # Painter's order by role, not matplotlib's per-artist depth sort, which can put the floor over
        # a foot; seen from above the floor, floor < grid < path < body is always right.
        axes.computed_zorder = False
        self.floor = axes.add_collection3d(Poly3DCollection([], facecolor=FLOOR_FILL, edgecolor="none", zorder=0))
        lines_per_direction = int(2 * frame.radius / FLOOR_GRID_SPACING) + 2
        self.floor_lines = [
            axes.plot([], [], [], color=FLOOR_COLOUR, linewidth=0.6, zorder=1)[0]
            for _ in range(2 * lines_per_direction)
        ]
        self.path_line = axes.plot([], [], [], color=PATH_COLOUR, linewidth=0.8, linestyle=":", zorder=2)[0]
        self.chain_lines = [
            (chain, axes.plot([], [], [], color=CHAIN_COLOURS[JOINT_NAMES[chain[-1]]], linewidth=2.0,
                              solid_capstyle="round", zorder=3)[0])
            for chain in KINEMATIC_CHAINS
        ]

    def show(self, frame_index: int) -> None:
        """Draw frame `frame_index` (clamped to the motion's last frame), the view centred on its pelvis."""
        pose = self.joints[min(frame_index, len(self.joints) - 1)]
        centre_x, centre_z = pose[JOINT["pelvis"], 0], pose[JOINT["pelvis"], 2]
        radius = self.frame.radius
        self.axes.set_xlim(centre_x - radius, centre_x + radius)
        self.axes.set_ylim(-centre_z - radius, -centre_z + radius)
        self._draw_floor(centre_x, centre_z)
        root_path = self.joints[:, JOINT["pelvis"]] * np.array([1.0, 0.0, 1.0])
        outside = (np.abs(root_path[:, 0] - centre_x) > radius) | (np.abs(root_path[:, 2] - centre_z) > radius)
        root_path[outside] = np.nan  # matplotlib 3D does not clip to the axes box
        self.path_line.set_data_3d(*_to_plot(root_path))
        for chain, line in self.chain_lines:
            line.set_data_3d(*_to_plot(pose[list(chain)]))

    def _draw_floor(self, centre_x: float, centre_z: float) -> None:
        """The view square on y = 0, with grid lines at fixed world positions (they slide as the body moves)."""
        radius = self.frame.radius
        span_x, span_z = centre_x + radius * np.array([-1.0, 1.0]), centre_z + radius * np.array([-1.0, 1.0])
        corners = _on_floor(span_x[[0, 1, 1, 0]], span_z[[0, 0, 1, 1]])
        self.floor.set_verts([np.stack(_to_plot(corners), axis=-1)])
        half = len(self.floor_lines) // 2
        for line, x in zip(self.floor_lines[:half], _grid_positions(span_x, half)):  # constant x, along z
            line.set_data_3d(*_to_plot(_on_floor(np.full(2, x), span_z)))
        for line, z in zip(self.floor_lines[half:], _grid_positions(span_z, half)):  # constant z, along x
            line.set_data_3d(*_to_plot(_on_floor(span_x, np.full(2, z))))


def _on_floor(x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """(N, 3) points on y = 0 from N x and N z coordinates."""
    return np.stack([x, np.zeros_like(x), z], axis=-1)


def _grid_positions(span: np.ndarray, count: int) -> np.ndarray:
    """`count` multiples of the grid spacing from span[0] on; those past span[1] are NaN (not drawn)."""
    positions = math.ceil(span[0] / FLOOR_GRID_SPACING) * FLOOR_GRID_SPACING + FLOOR_GRID_SPACING * np.arange(count)
    return np.where(positions <= span[1], positions, np.nan)


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width=max(width, 10), max_lines=3, placeholder=" …")) or " "


@contextlib.contextmanager
def _atomic_path(out_path: str | os.PathLike) -> Iterator[str]:
    """A temporary path beside `out_path` (same suffix, so writers pick the format); renamed on success."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=out_path.suffix, dir=out_path.parent)
    os.close(handle)
    try:
        yield temporary
        os.replace(temporary, out_path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
