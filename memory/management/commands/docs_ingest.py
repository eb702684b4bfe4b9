"""`manage.py docs_ingest <path> [...]`: add files, or every supported file under folders, to the document
library and index them here, with progress; a refused file is reported and the others go on."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from memory.documents import parsing, services
from memory.documents.models import Document
from memory.documents.parsing import DocumentError


def _files(paths: list[str]) -> list[Path]:
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in parsing.KINDS
                                and not any(part.startswith(".") for part in p.relative_to(path).parts)))
        elif path.is_file():
            found.append(path)
        else:
            raise CommandError(f"{raw}: no such file or folder")
    return found


class Command(BaseCommand):
    help = "Add documents (files, or folders searched for .txt .md .html .pdf .docx) to BABS's library."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", help="files or folders")

    def handle(self, *args: Any, **options: Any) -> None:
        # Live pages are told when the product runs; from a shell with it stopped there is no one to tell.
        realtime = logging.getLogger("a4ps_site.realtime")
        level = realtime.level
        realtime.setLevel(logging.ERROR)
        try:
            self.ingest(options)
        finally:
            realtime.setLevel(level)

    def ingest(self, options: dict[str, Any]) -> None:
        files = _files(options["paths"])
        if not files:
            raise CommandError("no supported files found (.txt .md .markdown .html .htm .pdf .docx)")
        added = same = refused = 0
        for path in files:
            try:
                document, created = services.document_add(name=path.name, data=path.read_bytes(), enqueue=False)
            except (DocumentError, OSError) as exc:
                refused += 1
                self.stderr.write(f"refused  {path}: {exc}")
                continue
            if not created:
                same += 1
                self.stdout.write(f"kept     {path}: already in the library as “{document}”")
                continue
            self.stdout.write(f"indexing {path} …")
            done = services.document_ingest(
                document_id=document.pk,
                on_progress=lambda d: self.stdout.write(f"  {d.progress_pct:3d}% {d.stage}") if d.stage else None)
            if done is None or done.status != Document.Status.INDEXED:
                refused += 1
                self.stderr.write(f"failed   {path}: {done.error if done else 'deleted while indexing'}")
            else:
                added += 1
                self.stdout.write(f"indexed  {path}: {done.chunk_count} chunks")
        self.stdout.write(f"{added} indexed, {same} already there, {refused} refused or failed.")
        if refused and not added and not same:
            raise CommandError("no document was added")
