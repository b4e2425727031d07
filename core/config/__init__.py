"""Plain dataclass configs, one per section, each validating itself with precise messages."""

from core.config._build import ConfigError
from core.config.connector import ConnectorConfig
from core.config.data import DataConfig
from core.config.experiment import RUNTIME_KEYS, SECTIONS, ExperimentConfig
from core.config.fusion import FusionConfig
from core.config.language_model import LanguageModelConfig
from core.config.pruning import PruningConfig
from core.config.train import EvalConfig, LoggingConfig, TrainConfig
from core.config.vision import VisionConfig

__all__ = [
    "RUNTIME_KEYS",
    "SECTIONS",
    "ConfigError",
    "ConnectorConfig",
    "DataConfig",
    "EvalConfig",
    "ExperimentConfig",
    "FusionConfig",
    "LanguageModelConfig",
    "LoggingConfig",
    "PruningConfig",
    "TrainConfig",
    "VisionConfig",
]
