"""The offline indexing pipeline: scan -> plan -> decode -> embed -> write (uses search/)."""

from .pipeline import IndexOptions, IndexReport, run_index
from .plan import Plan, make_plan
from .scan import scan

__all__ = ["IndexOptions", "IndexReport", "Plan", "make_plan", "run_index", "scan"]
