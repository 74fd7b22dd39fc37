"""``focaldepth generate``: synthetic focus-sweep datasets (config, sharded resumable runs,
HDF5 storage with a manifest, contact sheets). The file format is documented in
:mod:`focaldepth.generate.storage`; the run semantics (determinism, sharding, resuming) in
:mod:`focaldepth.generate.jobs`; the scene model in :mod:`focaldepth.scenes`.
"""

from focaldepth.generate.config import GENERATOR_VERSION, GenerateConfig, load_config, parse_config
from focaldepth.generate.runner import Shard, Summary, parse_shard, run_generate, shard_indices
from focaldepth.generate.storage import (
           FORMAT_NAME,
           FORMAT_VERSION,
           MANIFEST_NAME,
           read_record,
           sequence_filename,
)

__all__ = [
           "FORMAT_NAME",
           "FORMAT_VERSION",
           "GENERATOR_VERSION",
           "MANIFEST_NAME",
           "GenerateConfig",
           "Shard",
           "Summary",
           "load_config",
           "parse_config",
           "parse_shard",
           "read_record",
           "run_generate",
           "sequence_filename",
           "shard_indices",
]
