import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples")
sys.path.insert(0, EXAMPLES)

# every kernel the tests generate is also parsed by TVMScript's parser and must equal the fast reader's PrimFunc
os.environ.setdefault("SPARSEFORGE_CHECK_SCRIPT_READER", "1")


@pytest.fixture(scope="session")
def examples_dir() -> str:
    return EXAMPLES
