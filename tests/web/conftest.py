import pytest

from bgchallenge.service import Role


@pytest.fixture
def role() -> Role:
    """The API tests enqueue URLs nobody serves: no workers, so nothing fetches them."""
    return Role.WEB
