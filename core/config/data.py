"""Video/data section: where clips come from and how they are sampled, decoded and tokenised."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.config._build import fail
from core.registry import DATASETS, SAMPLING_POLICIES

SPLITS = ("train", "validation")
# Measured on 300 training clips of the default synthetic benchmark (benchmarks/results/learnability.md).
SYNTHETIC_PIXEL_MEAN = (0.166, 0.165, 0.163)
SYNTHETIC_PIXEL_STD = (0.107, 0.098, 0.104)
SIGLIP_PIXEL_STATS = (0.5, 0.5, 0.5)
TASKS = ("qa", "caption")


@dataclass
class DataConfig:
    """Video vocabulary follows the seed framework (`data_root`, `dataset_type`, ... `max_samples`).

    The defaults are the tiny local preset: the synthetic video-QA benchmark, generated under
    `data_root` on first use when `generate_synthetic` is true.
    """

    data_root: str = "data/synthetic"
    dataset_type: str = "qa_jsonl"
    dataset_name: str = "synthetic"
    sampling_policy: str = "uniform"
    split: str = "train"
    eval_split: str = "validation"
    fps: float = 2.0
    max_frames: int = 8
    min_frames: int = 4
    frame_size: int = 64
    max_samples: int = 0
    max_eval_samples: int = 0
    max_text_len: int = 32  # room for the synthetic captions of caption pre-training
    prompt: str = ""
    task: str = "qa"
    manifest: str = ""
    ground_truth: bool = False
    cache_frames: bool = True
    num_workers: int = 0
    generate_synthetic: bool = True
    synthetic_train: int = 3000
    synthetic_val: int = 500
    synthetic_seed: int = 0
    # Question types to generate (a subset of core.data.synthetic.vocab.QUESTION_TYPES); empty = all.
    # The tiny preset's mix rewards keeping the right frames: besides the moving object's colour and
    # the object count, three types whose evidence lies in a few frames after the first (which
    # object appeared first, the colour of an object seen only mid-clip, the colour an object turns
    # into). Chance 0.26; frame 0 settles 24% of its questions, a fixed crop of half the frames
    # 77-95%, the oracle all (benchmarks/results/synthetic_stats.md). A from-scratch base learns it
    # in 600 CPU steps (0.91-0.94 over 3 seeds); without count 1 seed in 3 stays at chance
    # (benchmarks/results/learnability.md). Use [] for the full benchmark.
    synthetic_question_types: list[str] = field(
        default_factory=lambda: ["colour", "count", "which_first", "appears", "turns_into"]
    )
    # Per-channel RGB statistics in [0, 1] units that frames are normalised with. The defaults are the
    # synthetic benchmark's own (dark backgrounds): with SigLIP's 0.5/0.5 its small objects change
    # the input by too little for a from-scratch model to learn in minutes. Real checkpoints need
    # their own preprocessing (SigLIP: [0.5, 0.5, 0.5] for both).
    pixel_mean: list[float] = field(default_factory=lambda: list(SYNTHETIC_PIXEL_MEAN))
    pixel_std: list[float] = field(default_factory=lambda: list(SYNTHETIC_PIXEL_STD))

    def __post_init__(self) -> None:
        if self.dataset_type not in DATASETS:
            raise ValueError(DATASETS.unknown_message(self.dataset_type, "data.dataset_type"))
        if self.sampling_policy not in SAMPLING_POLICIES:
            raise ValueError(
                SAMPLING_POLICIES.unknown_message(self.sampling_policy, "data.sampling_policy")
            )
        for name in ("split", "eval_split"):
            if getattr(self, name) not in SPLITS:
                fail(f"data.{name}", getattr(self, name), "unknown split", f"use one of {SPLITS}")
        if self.task not in TASKS:
            fail("data.task", self.task, "unknown task", f"use one of {TASKS}")
        if not self.fps > 0:
            fail("data.fps", self.fps, "must be positive", "set a sampling rate such as 2.0")
        if self.max_frames < 1:
            fail("data.max_frames", self.max_frames, "must be ≥ 1", "set a frame budget such as 8")
        if self.min_frames < 1:
            fail("data.min_frames", self.min_frames, "must be ≥ 1", "set it to 1 or more")
        if self.min_frames > self.max_frames:
            fail(
                "data.min_frames",
                self.min_frames,
                f"exceeds data.max_frames={self.max_frames}",
                "lower data.min_frames or raise data.max_frames",
            )
        if self.frame_size < 8:
            fail("data.frame_size", self.frame_size, "too small", "use at least 8 pixels")
        for name in ("max_samples", "max_eval_samples", "num_workers"):
            if getattr(self, name) < 0:
                fail(f"data.{name}", getattr(self, name), "must be ≥ 0", "use 0 for 'all'/'none'")
        if self.max_text_len < 2:
            fail("data.max_text_len", self.max_text_len, "too short", "allow at least 2 tokens")
        for name in ("pixel_mean", "pixel_std"):
            values = getattr(self, name)
            if len(values) != 3 or not all(isinstance(v, int | float) for v in values):
                fail(f"data.{name}", values, "needs 3 numbers (R, G, B)", "e.g. [0.5, 0.5, 0.5]")
        if not all(v > 0 for v in self.pixel_std):
            fail("data.pixel_std", self.pixel_std, "must be positive", "e.g. [0.5, 0.5, 0.5]")
        if self.synthetic_question_types:
            # Imported here: importing core.data at module level would make `import core.config`
            # load torch (there is no import cycle either way).
            from core.data.synthetic.vocab import question_types_problem

            problem = question_types_problem(self.synthetic_question_types)
            if problem:
                fail("data.synthetic_question_types", self.synthetic_question_types, *problem)
