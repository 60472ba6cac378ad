"""Fetching from Debian with apt itself, into a private cache: index files and unpacked packages.

Nothing is installed and the system's apt state is never touched: `apt-get update` runs with its
own sources list, lists directory and cache (`Dir::State::Lists`, `Dir::Cache`), and packages
are fetched with `apt-get download` and unpacked with `dpkg -x`. Everything lands under
`cache_dir`, so a rebuild reuses it. The builder only needs the three methods of `Fetcher`;
tests inject a fetcher over fixture files instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.parse
from pathlib import Path
from typing import Protocol

from seqpt_jax.errors import UserError

MIRROR = os.environ.get("SEQPT_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# Pinned so that two machines build the same corpus; override to follow another release.
SUITE = os.environ.get("SEQPT_DEBIAN_SUITE", "bookworm")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


class Fetcher(Protocol):
    def packages_index(self) -> Path: ...
    def translation_index(self, ddtp_code: str) -> Path | None: ...
    def package_tree(self, package: str) -> Path | None: ...


class AptFetcher:
    """Debian indexes and packages through apt, cached under `cache_dir`."""

    def __init__(self, cache_dir: str | os.PathLike, ddtp_codes: list[str],
                 mirror: str = MIRROR, suite: str = SUITE):
        self.root = Path(cache_dir)
        self.ddtp_codes = ddtp_codes
        self.mirror, self.suite = mirror, suite
        self._updated = False
        for tool in ("apt-get", "dpkg"):
            if shutil.which(tool) is None:
                raise UserError(f"`{tool}` not found: the corpus is built from Debian packages "
                                "with apt; run on a Debian-like machine or copy a built corpus "
                                "and pass --out to it.")
        try:
            for sub in ("lists/partial", "archives/partial", "debs", "tree"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot write the download cache {self.root} ({e.strerror}); "
                            "pass --cache DIR on a writable disk.") from None

    def _options(self) -> list[str]:
        sources = self.root / "sources.list"
        signed = f"[signed-by={KEYRING}] " if os.path.exists(KEYRING) else ""
        sources.write_text(f"deb {signed}{self.mirror} {self.suite} main\n")
        opts = {
            "Dir::Etc::SourceList": str(sources), "Dir::Etc::SourceParts": "-",
            "Dir::State::Lists": str(self.root / "lists"), "Dir::Cache": str(self.root),
            "Acquire::Languages": ",".join(["en"] + self.ddtp_codes),
            "Acquire::GzipIndexes": "false",   # plain files we can read without lz4
            "APT::Architecture": "amd64",      # only the index's Section/Source are used
        }
        if os.geteuid() == 0:                  # _apt cannot write into our private dirs
            opts["APT::Sandbox::User"] = "root"
        return [a for k, v in opts.items() for a in ("-o", f"{k}={v}")]

    def _run(self, args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=cwd, capture_output=True, text=True)

    def _index(self, pattern: str) -> Path | None:
        found = sorted(p for p in (self.root / "lists").glob(pattern) if p.is_file())
        return found[0] if found else None

    def update(self) -> None:
        """`apt-get update` into the private lists, once, and only if an index is missing."""
        if self._updated:
            return
        wanted = ["*_binary-amd64_Packages"] + [self._translation_glob(c) for c in ["en"] + self.ddtp_codes]
        if all(self._index(w) for w in wanted):
            self._updated = True
            return
        r = self._run(["apt-get", "update", "-q", *self._options()])
        if r.returncode != 0 or not self._index(wanted[0]):
            last = (r.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"apt-get update from {self.mirror} failed ({last}); check the "
                            "network or set SEQPT_DEBIAN_MIRROR to a reachable Debian mirror.")
        self._updated = True

    @staticmethod
    def _translation_glob(code: str) -> str:
        # apt escapes '_' in file names as %5f.
        return f"*_i18n_Translation-{urllib.parse.quote(code).replace('_', '%5f')}"

    def packages_index(self) -> Path:
        self.update()
        return self._index("*_binary-amd64_Packages")

    def translation_index(self, ddtp_code: str) -> Path | None:
        self.update()
        return self._index(self._translation_glob(ddtp_code))

    def package_tree(self, package: str) -> Path | None:
        """The unpacked package (cached), or None when the archive has no such package."""
        tree = self.root / "tree" / package
        if (tree / ".complete").exists():
            return tree
        debs = self.root / "debs"
        deb = next(iter(sorted(debs.glob(f"{package}_*.deb"))), None)
        if deb is None:
            self.update()
            r = self._run(["apt-get", "download", "-q", *self._options(), package], cwd=debs)
            if r.returncode != 0:
                if "Unable to locate package" in r.stderr or "has no installation candidate" in r.stderr:
                    return None
                last = (r.stderr.strip().splitlines() or ["no output"])[-1]
                raise UserError(f"apt-get download {package} failed ({last}); check the network "
                                "or the mirror (SEQPT_DEBIAN_MIRROR).")
            deb = next(iter(sorted(debs.glob(f"{package}_*.deb"))), None)
            if deb is None:
                raise UserError(f"apt-get download {package} wrote no .deb into {debs}.")
        shutil.rmtree(tree, ignore_errors=True)
        r = self._run(["dpkg", "-x", str(deb), str(tree)])
        if r.returncode != 0:
            deb.unlink()                       # a truncated download: fetch again next time
            raise UserError(f"dpkg -x {deb.name} failed ({r.stderr.strip()[-200:]}); "
                            "rerun to download it again.")
        (tree / ".complete").touch()
        return tree
