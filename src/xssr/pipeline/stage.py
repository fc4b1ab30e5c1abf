"""Stage bookkeeping: a stage's manifest is written last and marks it complete.

Re-running with the same configuration finds the manifest with the same fingerprint and
reuses the stage's outputs; any change of configuration or upstream result changes the
fingerprint and the stage runs again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xssr.report.io import read_json, remove_interrupted_writes, write_json
from xssr.report.provenance import config_fingerprint

logger = logging.getLogger(__name__)
#: One line per stage ("pretrain: running", "select/xssr: reused ..."). The CLI shows this
#: logger's INFO records at its default verbosity, also when the output is a log file.
stage_log = logging.getLogger("xssr.stages")

MANIFEST = "manifest.json"


@dataclass
class Stage:
    """Output folder of one stage, identified by the fingerprint of everything it depends on."""

    folder: Path
    inputs: dict[str, Any]
    name: str = ""  # as shown to the user, e.g. "select/xssr"; default: the folder's name

    @property
    def label(self) -> str:
        return self.name or self.folder.name

    @property
    def fingerprint(self) -> str:
        return config_fingerprint(self.inputs)

    @property
    def manifest_path(self) -> Path:
        return self.folder / MANIFEST

    def is_complete(self) -> bool:
        if not self.manifest_path.exists():
            return False
        try:
            return read_json(self.manifest_path).get("fingerprint") == self.fingerprint
        except (OSError, ValueError):
            return False

    def outputs(self) -> dict[str, Any]:
        return read_json(self.manifest_path).get("outputs", {})

    def start(self) -> float:
        # Remove a stale marker first: a crash halfway must not leave an old "complete" manifest
        # next to half-replaced outputs.
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.manifest_path.exists():
            self.manifest_path.unlink()
        # A process killed between writing an output's temporary file and renaming it
        # (io.atomic_path) leaves ".NAME.XXXX.tmp" here, possibly a whole checkpoint. The stage
        # now rewrites all its outputs, so such a file can only be an earlier attempt's debris.
        remove_interrupted_writes(self.folder)
        stage_log.info("%s: running", self.label)
        return time.perf_counter()

    def reuse(self) -> None:
        """Say that the finished outputs of an earlier run are used as they are."""
        stage_log.info("%s: reused (%s)", self.label, self.folder)

    def finish(self, started: float, outputs: dict[str, Any]) -> dict[str, Any]:
        seconds = time.perf_counter() - started
        write_json(
            self.manifest_path,
            {
                "fingerprint": self.fingerprint,
                "inputs": self.inputs,
                "seconds": round(seconds, 3),
                "outputs": outputs,
            },
        )
        stage_log.info("%s: done in %.1f s", self.label, seconds)
        return outputs
