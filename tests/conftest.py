import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples")
sys.path.insert(0, EXAMPLES)


@pytest.fixture(scope="session")
def examples_dir() -> str:
    return EXAMPLES
