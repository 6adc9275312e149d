"""The offline indexing pipeline: scan -> plan -> decode -> embed -> write (uses search/).

Each stage is usable alone (decode.decode_batch, embed.embed_batch, write.Writer); pipeline
runs them all under the index lock."""

from .pipeline import ClusterOptions, IndexOptions, run_index
from .plan import Plan, make_plan
from .report import IndexReport, StageTimes
from .scan import scan

__all__ = [
    "ClusterOptions",
    "IndexOptions",
    "IndexReport",
    "Plan",
    "StageTimes",
    "make_plan",
    "run_index",
    "scan",
]
