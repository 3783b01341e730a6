"""Print the lowest Optuna release pyproject.toml admits (its ``optuna>=X`` bound)."""

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
for line in project["project"]["dependencies"]:
    requirement = Requirement(line)
    if requirement.name == "optuna":
        lowest = [s.version for s in requirement.specifier if s.operator in (">=", "==")]
        print(lowest[0])
        break
else:
    raise SystemExit("pyproject.toml names no optuna dependency")
