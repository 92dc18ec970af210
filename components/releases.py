"""The releases of an output folder, as their manifests describe them.

Publish writes them; PreviousRelease picks the one a run starts from and is judged against.
Every file goes through tf.io.gfile, so the folder may be on an object store.
"""

from __future__ import annotations

import dataclasses
import os

import tensorflow as tf

from offline_recall.core import contracts as C
from offline_recall.core import records, storage


@dataclasses.dataclass(frozen=True)
class Release:
    """A complete release (one with a manifest)."""

    run_id: str
    folder: str
    run_date: str | None  # YYYY-MM-DD, or None for a run over an undated input

    @property
    def order(self) -> tuple[str, str]:
        """Releases sort by run date, then by run id (which sorts by time)."""
        return (self.run_date or "", self.run_id)


def list_releases(output_dir: str) -> list[Release]:
    """Every complete release under OUTPUT/releases/, oldest date first.

    A folder without a manifest (a run killed while writing) is not a release.
    """
    root = os.path.join(output_dir, C.RELEASES_DIR)
    if not tf.io.gfile.isdir(root):
        return []
    found = []
    for name in sorted(n.rstrip("/") for n in tf.io.gfile.listdir(root)):
        folder = os.path.join(root, name)
        manifest_path = records.Manifest.path_in(folder)
        if not tf.io.gfile.exists(manifest_path):
            continue
        found.append(Release(name, folder, records.Manifest.read(manifest_path).run_date))
    return sorted(found, key=Release.order.fget)


def previous_release(output_dir: str, run_date: str | None) -> tuple[Release | None, str]:
    """The release a run of `run_date` starts from and is compared with; and why, in words.

    A dated run takes the newest release of an **earlier** date: rerunning a date starts from
    the same model whatever that date's own earlier runs published, so a rerun is identical.
    An undated run (one file, no --date) takes the current release (LATEST).
    """
    if run_date is None:
        latest = storage.read_latest(output_dir)
        if latest is None:
            return None, "nothing has been published in this output folder yet"
        by_folder = {r.folder: r for r in list_releases(output_dir)}
        release = by_folder.get(latest["release"])
        if release is None:
            return None, f"LATEST points to {latest['release']}, which has no manifest"
        return release, "the current release (the input is undated)"
    earlier = [r for r in list_releases(output_dir) if r.run_date and r.run_date < run_date]
    if not earlier:
        return None, f"no release of a date before {run_date} in this output folder"
    return earlier[-1], f"the newest release of a date before {run_date}"
