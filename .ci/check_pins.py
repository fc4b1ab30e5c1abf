"""Fail loudly when the installed packages differ from the pins in constraints.txt.

CI runs on whatever the machine already carries plus what `pip install -c constraints.txt`
adds; a preinstalled package pip chose to keep, or a pin that no longer matches what the
install resolved, would make CI test something other than what a fresh machine gets.
Checks every package xssr and its ``test`` extra use, directly or through another
package: it is installed, pinned, and at exactly the pinned version (a local build label
such as ``+cpu`` is ignored). Packages outside that closure are not xssr's business.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    pins = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep:
            raise SystemExit(f"{path}:{number}: expected NAME==VERSION, got {line!r}")
        pins[canonical(name)] = version.strip()
    return pins


def installed_closure(root: str, extras: set[str]) -> dict[str, str]:
    """{name: installed version} of ``root`` and everything it needs, with ``extras`` of root.

    Raises PackageNotFoundError naming the first missing distribution.
    """
    from packaging.requirements import Requirement

    found: dict[str, str] = {}
    stack = [(root, extras)]
    while stack:
        name, wanted = stack.pop()
        dist = metadata.distribution(name)
        found[canonical(name)] = dist.version
        for text in dist.requires or []:
            requirement = Requirement(text)
            environments = [{"extra": e} for e in wanted] or [{"extra": ""}]
            if requirement.marker and not any(requirement.marker.evaluate(env) for env in environments):
                continue
            if canonical(requirement.name) not in found:
                stack.append((requirement.name, set(requirement.extras)))
    return found


def main() -> int:
    pins = read_pins(Path(__file__).resolve().parent.parent / "constraints.txt")
    try:
        installed = installed_closure("xssr", {"test"})
    except metadata.PackageNotFoundError as error:
        print(f"{error.args[0]}: needed by xssr[test] but not installed", file=sys.stderr)
        return 1
    problems = []
    for name, version in sorted(installed.items()):
        if name == "xssr":
            continue
        if name not in pins:
            problems.append(f"{name}: installed {version}, not pinned in constraints.txt")
        elif version.split("+", 1)[0] != pins[name]:
            problems.append(f"{name}: installed {version}, constraints.txt pins {pins[name]}")
    if problems:
        print("The environment differs from constraints.txt:", *problems, sep="\n  ", file=sys.stderr)
        return 1
    print(f"environment matches constraints.txt ({len(installed) - 1} packages xssr[test] uses)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
