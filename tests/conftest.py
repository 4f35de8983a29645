import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's cache: every test gets its own HEADSTART_CACHE_DIR."""
    monkeypatch.setenv("HEADSTART_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
