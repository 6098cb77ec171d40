"""Shared fixtures."""
import pytest


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """(work copy, data root) after one complete run of the workflow's tiny preset, shared by
    tests/test_workflow.py and tests/test_views.py (the run takes minutes; it happens once)."""
    from tests.test_workflow import build_tiny

    return build_tiny(tmp_path_factory)
