"""A SQLite store on a file system that fills up, for tests of what a full disk does.

As root (the CI runs as root) a 2 MB tmpfs is mounted and filled with a ballast
file; freeing space deletes the ballast. Where mounting is not permitted, the
store's own size cap (``?max_size=``, SQLite's ``max_page_count``) makes SQLite
answer SQLITE_FULL just the same, and freeing space reopens the file uncapped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


class SmallDisk:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.mounted = False
        self.ballast = root / "ballast"
        self.path = root / "results.db"

    def mount(self) -> SmallDisk:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0 and shutil.which("mount"):
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(self.root)],
                capture_output=True,
            )
            self.mounted = done.returncode == 0
        return self

    @property
    def url(self) -> str:
        """Where the store lives until space is freed."""
        cap = "" if self.mounted else "?max_size=160k"
        return f"sqlite:///{self.path}{cap}"

    @property
    def freed_url(self) -> str:
        return f"sqlite:///{self.path}"

    def fill(self, leave: int) -> None:
        """Leave about ``leave`` bytes free (on tmpfs; the cap already limits the other way)."""
        if self.mounted:
            stat = os.statvfs(self.root)
            free = stat.f_bavail * stat.f_frsize
            with open(self.ballast, "wb") as fh:
                fh.write(b"\0" * max(0, free - leave))

    def free(self) -> None:
        if self.mounted:
            self.ballast.unlink()

    def close(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.root)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path) -> Iterator[SmallDisk]:
    disk = SmallDisk(tmp_path / "small").mount()
    try:
        yield disk
    finally:
        disk.close()
