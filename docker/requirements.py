"""Print the project's runtime dependencies from pyproject.toml, one per line, for ``pip install -r``.

The image installs them (pinned by constraints.txt) before any code is copied, so editing a .py file keeps
the dependency layer:  python docker/requirements.py pyproject.toml > requirements.txt
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def requirements(pyproject: Path) -> list[str]:
    return list(tomllib.loads(pyproject.read_text())["project"]["dependencies"])


if __name__ == "__main__":
    print("\n".join(requirements(Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml"))))
