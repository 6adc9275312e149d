"""Schemathesis against the real `pixfind serve` (127.0.0.1, a small real index built with the
tiny test model, hostile file names included): for every operation of /openapi.json, a bounded
number of generated requests (valid and invalid). No answer may be a 5xx, and every answer must
match what the schema documents: its status code, content type and body (issue 15, item 12).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from pixfind.indexer import IndexOptions, run_index  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ..conftest import make_picture  # noqa: E402
from .test_api import SPEC  # noqa: E402
from .test_api_hardening import pixfind_serve  # noqa: E402

EXAMPLES = 30  # per operation: about 300 requests in all, a few seconds
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("fuzz")
    photos = base / "photos"
    for i in range(6):
        make_picture(photos / f"p{i}.{['jpg', 'png', 'webp'][i % 3]}", seed=700 + i)
    make_picture(photos / os.fsdecode(b"n\xe9e\xff.jpg"), seed=710)
    make_picture(photos / "line\nbreak\r.jpg", seed=711)
    home = base / "index"
    run_index(home, IndexOptions(roots=[str(photos)]), spec=SPEC)
    log = base / "serve.log"
    with pixfind_serve(home, log) as url:
        yield url
    text = log.read_text()
    assert "Traceback" not in text, text


def test_api_answers_as_documented(served):
    schema = schemathesis.openapi.from_url(f"{served}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9  # search x3, images, thumbnails, status, login, logout, healthz
    for operation in operations:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,  # the same requests on every run
            database=None,
        )
        @given(case=operation.as_strategy())
        def fuzz(case):
            case.call_and_validate(base_url=served, checks=CHECKS, timeout=30)

        fuzz()
