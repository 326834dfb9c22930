"""Read and write the HumanML3D directory layout, bit-compatible with the released dataset.

    <root>/new_joint_vecs/<id>.npy   (F, 263) float32 features, 20 fps
    <root>/new_joints/<id>.npy       (F, 22, 3) float32 joint positions, metres (optional)
    <root>/texts/<id>.txt            one caption per line: `caption#word/POS word/POS ...#start#end`
    <root>/{train,val,test}.txt      motion ids, one per line (`train_val.txt`, `all.txt` may exist)
    <root>/Mean.npy, Std.npy         (263,) feature normaliser

`load_split` applies the rules of the upstream loader (MDM's Text2MotionDatasetV2): a caption with
start = end = 0 (or NaN) describes the whole clip; any other caption describes the sub-clip
features[int(start * 20):int(end * 20)], which becomes its own item with a prefixed id; clips and
sub-clips with fewer than 40 or at least 200 frames are dropped. `check_dataset` (in `check.py`)
reports every problem of a directory at once. Writes are atomic (temporary file, then os.replace).
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from scl_ray import storage
from scl_ray.errors import UserError
from scl_ray.motion.constants import FEATURE_DIM, FPS, MAX_FRAMES, MIN_FRAMES
from scl_ray.motion.skeleton import NUM_JOINTS

__all__ = ["Caption", "MotionRecord", "tokenize", "parse_text_line", "format_text_line",
           "write_motion", "write_split", "read_split", "read_motion", "load_split", "check_dataset"]

FEATURES_DIR, JOINTS_DIR, TEXTS_DIR = "new_joint_vecs", "new_joints", "texts"
MEAN_FILE, STD_FILE = "Mean.npy", "Std.npy"
SPLITS = ("train", "val", "test")
OPTIONAL_SPLITS = ("train_val", "all")
DROP_FRAMES = 200  # upstream drops clips of 200 frames or more, and crops kept ones to 196 when batching
# Upstream names a sub-clip item `<letter>_<id>` with a random letter from this alphabet.
SUBCLIP_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVW"
_ID_PATTERN = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]*")
_TEXT_FORMAT = "caption#word/POS word/POS ...#start#end (start and end in seconds, 0.0#0.0 = whole clip)"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Caption:
    """One description of a motion: `text`, its `word/POS` tokens, and the described span in seconds.

    start = end = 0.0 means the whole clip; otherwise the sub-clip [start, end) seconds.
    """

    text: str
    tokens: tuple[str, ...]
    start: float = 0.0
    end: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "tokens", tuple(self.tokens))
        if not self.text.strip() or "#" in self.text or len(self.text.splitlines()) != 1:
            raise ValueError(f"caption text {self.text!r} must be non-empty, on one line, without '#'")
        for token in self.tokens:
            if not token or any(c in token for c in " #\n"):
                raise ValueError(f"token {token!r} of caption {self.text!r} must be a non-empty "
                                 "`word/POS` without spaces or '#'")
        for name in ("start", "end"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"caption {self.text!r}: {name} = {value!r} must be finite seconds >= 0")
            object.__setattr__(self, name, float(value))
        if self.end < self.start:
            raise ValueError(f"caption {self.text!r}: end {self.end} s is before start {self.start} s")

    @property
    def whole_clip(self) -> bool:
        return self.start == 0.0 and self.end == 0.0


@dataclass(frozen=True, eq=False)
class MotionRecord:
    """One motion: features (F, 263) float32 at 20 fps, its captions, optional joints (F, 22, 3) metres."""

    id: str
    features: np.ndarray
    captions: tuple[Caption, ...]
    joints: np.ndarray | None = None

    def __post_init__(self):
        if not isinstance(self.id, str) or not _ID_PATTERN.fullmatch(self.id):
            raise ValueError(f"motion id {self.id!r} must be letters, digits, '_', '-' or '.', "
                             "not starting with '.' (it names files)")
        features = np.asarray(self.features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != FEATURE_DIM:
            raise ValueError(f"motion {self.id}: features have shape {features.shape}, "
                             f"expected (frames, {FEATURE_DIM})")
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "captions", tuple(self.captions))
        if self.joints is not None:
            joints = np.asarray(self.joints, dtype=np.float32)
            if joints.shape != (len(features), NUM_JOINTS, 3):
                raise ValueError(f"motion {self.id}: joints have shape {joints.shape}, expected "
                                 f"({len(features)}, {NUM_JOINTS}, 3) to match its {len(features)} feature frames")
            object.__setattr__(self, "joints", joints)


# A small rule and lexicon part-of-speech tagger standing in for spaCy's en_core_web_sm, which
# HumanML3D's text_process.py used (not installed here). Like upstream: hyphens are removed, only
# alphabetic words are kept, NOUN and VERB become their lemma except "left", and tags are universal
# POS. It knows the closed word classes of English and the vocabulary of motion captions; unknown
# words are tagged by suffix, and words that are both noun and verb ("a jump", "he jumps") by context.
_CLOSED_CLASSES = {
    "DET": "a an the this that these those his her their its my your our each every some any no "
           "another both all either neither",
    "PRON": "he she it they him them someone something somebody anyone anything everyone everything "
            "nothing himself herself itself themselves i me you we us who what which whom whose",
    "ADP": "with in on at from into onto for of by toward towards near upon against like during "
           "without beside besides within via throughout underneath beneath between among above "
           "below under after before",
    "CCONJ": "and or but nor yet",
    "SCONJ": "while as if because than though although whilst whereas until unless when where",
    "AUX": "is are was were be been being am has have had does do did can could will would should "
           "may might must shall ca wo",
    "PART": "not",
    "NUM": "one two three four five six seven eight nine ten eleven twelve twenty thirty hundred",
    "ADV": "then again very also away together still twice once here there just too almost really so "
           "sideways upward upwards downward downwards forth now first finally afterwards aside "
           "repeatedly clockwise counterclockwise anticlockwise forward forwards backward backwards "
           "fast hard much more most less quite rather even only always never ahead apart overhead",
    "ADJ": "left right slow quick big small large little long short high low wide narrow other same "
           "full heavy light several few many straight steady normal regular tiny huge giant "
           "imaginary invisible ready entire whole upper lower",
}
# Up, down, back, … are prepositions before a noun phrase ("up the stairs"), adverbs otherwise.
_PARTICLES = set("up down out off around over along behind across about past through back".split())
# Words that are both a noun and a verb ("a jump", "he jumps"); context picks the tag.
_DUAL = set(
    "walk run jump squat turn wave kick step spin hop dance jog stretch swing punch lean leap fall "
    "slide circle cross point stop start look bow nod roll flip lunge march stomp sway twist tilt skip "
    "drop push pull shake clap rock bounce crawl climb sprint dodge duck grab face box place pace".split())
_NOUNS = _DUAL | set(
    "man woman person figure human guy boy girl child body arm hand leg foot knee head shoulder hip "
    "waist torso chest elbow wrist ankle toe finger thigh neck side ground floor air direction "
    "time way motion movement stance position pose chair stair ball object wall table door room "
    "line path area front rest partner bar rope pole weight dumbbell instrument guitar violin exercise "
    "routine speed distance angle palm fist heel eye mouth chin thing ceiling jack".split())
_VERBS = _DUAL | set(
    "sit stand lift raise lower bend rotate throw catch pick put crouch kneel lie rise "
    "get go come take hold reach begin perform make use carry stumble balance stamp limp tiptoe open "
    "close wipe wash brush drink eat play extend fold flap flail swim fly drive ride return "
    "continue keep try appear seem bring sneak salute stagger strut stroll wobble sidestep cheer "
    "celebrate do have be wiggle hit move touch".split())
_IRREGULAR = {
    "feet": "foot", "people": "person", "men": "man", "women": "woman", "children": "child",
    "ran": "run", "sat": "sit", "stood": "stand", "went": "go", "gone": "go", "took": "take",
    "taken": "take", "held": "hold", "threw": "throw", "thrown": "throw", "caught": "catch",
    "got": "get", "rose": "rise", "risen": "rise", "lay": "lie", "lying": "lie", "began": "begin",
    "came": "come", "made": "make", "bent": "bend", "knelt": "kneel", "swung": "swing", "spun": "spin",
    "leapt": "leap", "fell": "fall", "fallen": "fall", "brought": "bring", "does": "do", "did": "do",
    "has": "have", "had": "have", "flew": "fly", "swam": "swim", "kept": "keep", "slid": "slide",
}
_LEXICON = {word: tag for tag, words in _CLOSED_CLASSES.items() for word in words.split()}
_ADJ_SUFFIXES = ("ful", "ous", "ive", "able", "ible", "al", "ic", "less", "ish")


def _lemma(word: str, lexicon: set[str]) -> str:
    """Base form of a noun or verb: irregular table, then the lexicon, then suffix stripping."""
    if word in _IRREGULAR or word in lexicon:
        return _IRREGULAR.get(word, word)
    for suffix in ("ing", "ed", "ies", "es", "s") if lexicon is _VERBS else ("ies", "es", "s"):
        if word.endswith(suffix) and len(word) > len(suffix) + 1:
            stem = word[: -len(suffix)]
            double = stem[:-1] if len(stem) > 2 and stem[-1] == stem[-2] and stem[-1] not in "lsz" else stem
            candidates = [stem + "y"] if suffix == "ies" else [stem, stem + "e", double]
            if suffix == "ed" and stem.endswith("i"):
                candidates.insert(0, stem[:-1] + "y")
            for candidate in candidates:
                if candidate in lexicon:
                    return candidate
            if suffix in ("s", "es") and word.endswith("ss"):
                return word
            return candidates[-1] if suffix in ("ing", "ed") else candidates[0]
    return word


def _base_tag(word: str) -> str:
    """Context-free tag: from the lexicons (DUAL: noun and verb), else by suffix, else UNKNOWN."""
    if word in _LEXICON:
        return _LEXICON[word]
    if word in _PARTICLES:
        return "PARTICLE"
    if word in _NOUNS and word not in _DUAL:
        return "NOUN"
    verb, noun = _lemma(word, _VERBS) in _VERBS, _lemma(word, _NOUNS) in _NOUNS
    if len(word) > 4 and word.endswith(("ing", "ed")) or word in _IRREGULAR and not noun:
        return "VERB"
    if verb and noun:
        return "DUAL"
    if verb or noun:
        return "VERB" if verb else "NOUN"
    if word.endswith("ly"):
        return "ADV"
    return "ADJ" if word.endswith(_ADJ_SUFFIXES) else "UNKNOWN"


def tokenize(text: str) -> tuple[str, ...]:
    """HumanML3D `word/POS` tokens of a caption, e.g. "a man kicks" -> ("a/DET", "man/NOUN", "kick/VERB")."""
    words = [w.split("'")[0] for w in re.findall(r"[A-Za-z]+(?:'[A-Za-z]+)?", text.replace("-", ""))]
    words = [w[:-1] if w.endswith("n") and f"{w}'t" in text else w for w in words]
    base = [_base_tag(word.lower()) for word in words]
    tokens, previous = [], "START"
    for index, (word, tag) in enumerate(zip(words, base)):
        lower = word.lower()
        following = base[index + 1] if index + 1 < len(base) else "END"
        if lower == "to":
            tag = "PART" if following in ("VERB", "DUAL") else "ADP"
        elif tag == "DUAL":
            tag = "NOUN" if previous in ("DET", "ADJ", "NUM", "ADP") else "VERB"
        elif tag == "UNKNOWN":
            tag = "VERB" if lower.endswith("s") and previous in ("NOUN", "PRON") else "NOUN"
        elif tag == "PARTICLE":
            tag = "NOUN" if previous == "DET" else "ADP" if following in ("DET", "PRON", "NUM") else "ADV"
        elif tag == "AUX" and lower in ("has", "have", "had", "do", "does", "did") and following in (
                "DET", "PRON", "NUM", "NOUN", "ADJ", "END"):
            tag = "VERB"
        elif tag == "ADJ" and previous == "DET" and following not in ("NOUN", "DUAL", "ADJ"):
            tag = "NOUN"
        if tag in ("NOUN", "VERB") and lower != "left":
            word = _lemma(lower, _VERBS if tag == "VERB" else _NOUNS)
        tokens.append(f"{word}/{tag}")
        previous = tag
    return tuple(tokens)


def parse_text_line(line: str, where: str) -> Caption:
    """Parse one `caption#tokens#start#end` line; NaN start/end become 0.0 as upstream.

    where: the place to name in errors, e.g. `texts/000001.txt:3`.
    Raises ValueError naming `where` and the expected format.
    """
    fields = line.strip().split("#")
    if len(fields) != 4:
        raise UserError(f"{where}: {len(fields)} '#'-separated fields in {line.strip()!r}, "
                        f"expected 4: {_TEXT_FORMAT}")
    text, tokens, start_text, end_text = fields
    try:
        start, end = float(start_text), float(end_text)
    except ValueError:
        raise UserError(f"{where}: start {start_text!r} / end {end_text!r} are not numbers, "
                        f"expected seconds: {_TEXT_FORMAT}") from None
    try:
        return Caption(text, tuple(tokens.split()), 0.0 if math.isnan(start) else start,
                       0.0 if math.isnan(end) else end)
    except ValueError as error:
        raise UserError(f"{where}: {error}; expected {_TEXT_FORMAT}") from None


def format_text_line(caption: Caption) -> str:
    """The `caption#tokens#start#end` line for a caption (no newline), as upstream writes it."""
    return f"{caption.text}#{' '.join(caption.tokens)}#{caption.start!r}#{caption.end!r}"


def _npy_bytes(array: np.ndarray) -> bytes:
    np.save(buffer := io.BytesIO(), array, allow_pickle=False)
    return buffer.getvalue()


def write_motion(root: str | os.PathLike, record: MotionRecord) -> None:
    """Write a motion's features, joints and captions under `root`, atomically per file.

    A record without joints removes a stale joints file of the same id.
    """
    if not record.captions:
        raise UserError(f"motion {record.id} has no captions; HumanML3D needs at least one per motion")
    root, joints_path = Path(root), Path(root) / JOINTS_DIR / f"{record.id}.npy"
    storage.write_bytes(root / FEATURES_DIR / f"{record.id}.npy", _npy_bytes(record.features))
    if record.joints is not None:
        storage.write_bytes(joints_path, _npy_bytes(record.joints))
    else:
        joints_path.unlink(missing_ok=True)
    text = "".join(format_text_line(caption) + "\n" for caption in record.captions)
    storage.write_bytes(root / TEXTS_DIR / f"{record.id}.txt", text.encode("utf-8"))


def write_split(root: str | os.PathLike, name: str, ids: Iterable[str]) -> None:
    """Write `<root>/<name>.txt` with one motion id per line."""
    ids = list(ids)
    bad = [motion_id for motion_id in ids if not _ID_PATTERN.fullmatch(str(motion_id))]
    if bad:
        raise UserError(f"split {name}: ids {bad[:5]} are not valid motion ids")
    storage.write_bytes(Path(root) / f"{name}.txt", "".join(f"{i}\n" for i in ids).encode("utf-8"))


def read_split(root: str | os.PathLike, name: str) -> list[str]:
    """Motion ids listed in `<root>/<name>.txt`, in file order (blank lines skipped)."""
    path = Path(root) / f"{name}.txt"
    if not path.is_file():
        present = sorted(p.stem for p in Path(root).glob("*.txt")) if Path(root).is_dir() else []
        raise FileNotFoundError(f"{path}: no split file '{name}'; split files here: {present or 'none'}")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _load_npy(path: Path, shape_tail: tuple[int, ...], motion_id: str) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing file for motion {motion_id}")
    array = np.load(path, allow_pickle=False)
    if array.ndim != 1 + len(shape_tail) or array.shape[1:] != shape_tail:
        raise UserError(f"{path}: motion {motion_id} has shape {array.shape}, expected (frames, "
                        f"{', '.join(map(str, shape_tail))})")
    return array.astype(np.float32, copy=False)


def read_captions(root: str | os.PathLike, motion_id: str) -> tuple[Caption, ...]:
    """All captions of a motion from `texts/<id>.txt` (blank lines skipped)."""
    path = Path(root) / TEXTS_DIR / f"{motion_id}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing caption file for motion {motion_id}")
    lines = path.read_text(encoding="utf-8").splitlines()
    captions = tuple(parse_text_line(line, f"{path}:{number}")
                     for number, line in enumerate(lines, start=1) if line.strip())
    if not captions:
        raise UserError(f"{path}: motion {motion_id} has no captions; expected lines {_TEXT_FORMAT}")
    return captions


def read_motion(root: str | os.PathLike, motion_id: str) -> MotionRecord:
    """One motion as stored: all its captions (sub-clip ones included), joints if the file exists."""
    root = Path(root)
    features = _load_npy(root / FEATURES_DIR / f"{motion_id}.npy", (FEATURE_DIM,), motion_id)
    joints_path = root / JOINTS_DIR / f"{motion_id}.npy"
    joints = _load_npy(joints_path, (NUM_JOINTS, 3), motion_id) if joints_path.is_file() else None
    return MotionRecord(motion_id, features, read_captions(root, motion_id), joints)


def subclip_id(motion_id: str, index: int) -> str:
    """Id of a motion's index-th sub-clip caption: `A_<id>` … `W_<id>`, `AA_<id>` … (upstream: a random letter)."""
    letters = len(SUBCLIP_LETTERS)
    prefix = SUBCLIP_LETTERS[index % letters]
    if index >= letters:
        prefix = SUBCLIP_LETTERS[index // letters - 1] + prefix
    return f"{prefix}_{motion_id}"


def load_split(root: str | os.PathLike, split: str, min_frames: int = MIN_FRAMES,
               max_frames: int = MAX_FRAMES) -> list[MotionRecord]:
    """Training items of a split, with upstream's rules (see the module docstring).

    Each motion with whole-clip captions gives one item holding all of them; each sub-clip caption
    gives one item `<letter>_<id>` (see `subclip_id`). Clips or sub-clips with fewer than
    `min_frames` or at least 200 frames are dropped; kept ones longer than `max_frames` keep their
    first `max_frames` frames (upstream crops them to 196 when batching). Items come in split order,
    a motion's whole-clip item before its sub-clips; `joints` is None (recover them from features).
    Raises FileNotFoundError/ValueError naming the file for missing or malformed data.
    """
    if not 1 <= min_frames <= max_frames:
        raise ValueError(f"need 1 <= min_frames <= max_frames, got {min_frames} and {max_frames}")
    root = Path(root)
    items: list[MotionRecord] = []
    dropped = 0
    for motion_id in read_split(root, split):
        features = _load_npy(root / FEATURES_DIR / f"{motion_id}.npy", (FEATURE_DIM,), motion_id)
        if not min_frames <= len(features) < DROP_FRAMES:
            dropped += 1
            continue
        captions = read_captions(root, motion_id)
        whole = tuple(caption for caption in captions if caption.whole_clip)
        if whole:
            items.append(MotionRecord(motion_id, features[:max_frames], whole))
        spans = [caption for caption in captions if not caption.whole_clip]
        for index, caption in enumerate(spans):
            segment = features[int(caption.start * FPS):int(caption.end * FPS)]
            if min_frames <= len(segment) < DROP_FRAMES:
                items.append(MotionRecord(subclip_id(motion_id, index), segment[:max_frames], (caption,)))
            else:
                dropped += 1
    log.info("%s/%s: %d items, %d clips or sub-clips dropped for length", root, split, len(items), dropped)
    return items


def check_dataset(root: str | os.PathLike, max_examples: int = 5):
    """Validate a HumanML3D directory and return a `check.CheckReport` of every problem found."""
    # check.py builds on this module, so it is imported when first needed rather than at the top.
    from scl_ray.motion.check import check_dataset as check

    return check(root, max_examples=max_examples)

