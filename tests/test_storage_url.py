"""Storage URLs: postgres:// is PostgreSQL; a bad dialect, driver or port is one line naming
where the URL came from, before anything is opened."""

from __future__ import annotations

import pytest

from hpo.errors import SpecError
from hpo.spec.storage_url import normalize_storage_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:pw@db:5432/hpo", "postgresql+psycopg2://u:pw@db:5432/hpo"),
        ("postgres+psycopg2://u@db/hpo", "postgresql+psycopg2://u@db/hpo"),
        ("postgresql://u:p%40ss@db/hpo", "postgresql+psycopg2://u:p%40ss@db/hpo"),
        ("postgresql+psycopg2://u@db/hpo", "postgresql+psycopg2://u@db/hpo"),
        ("sqlite:///./hpo.db", "sqlite:///./hpo.db"),
        ("grpc://proxy:13000", "grpc://proxy:13000"),
    ],
)
def test_accepted_urls(url: str, expected: str) -> None:
    assert normalize_storage_url(url, "--storage") == expected


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("mysql+nodriver://u:secret@db/hpo", "unknown database or driver 'mysql+nodriver'"),
        ("postgresql://u:secret@db:fivefourthree/hpo", "the port is not a number"),
        ("grpc://proxy:port", "grpc://host:port"),
        ("not a url", "is not a storage URL"),
        ("mysql+pymysql://u:secret@db/hpo", "pip install pymysql"),
    ],
)
def test_refused_urls_name_the_source_and_hide_the_password(url: str, words: str) -> None:
    try:
        import pymysql  # noqa: F401
    except ImportError:
        pass
    else:
        if "pymysql" in url:
            pytest.skip("pymysql is installed here")
    with pytest.raises(SpecError) as caught:
        normalize_storage_url(url, "HPO_STORAGE")
    message = str(caught.value)
    assert message.startswith("HPO_STORAGE: ") and words in message
    assert "secret" not in message and "\n" not in message
