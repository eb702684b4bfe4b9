"""From an uploaded file's bytes to text with structure: blocks (headings and paragraphs, each with its
page where the format has pages), then chunks that know their page, heading and character offsets.

Parsers: pypdf (PDF), python-docx (DOCX), selectolax's lexbor engine (HTML main text), plain decoding
for text and Markdown. Chunks come from semantic-text-splitter, which splits on structure (headings,
paragraphs, sentences) and overlaps neighbours. Every failure is a DocumentError whose message a person
can act on.
"""
from __future__ import annotations

import bisect
import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field

from semantic_text_splitter import MarkdownSplitter, TextSplitter

KINDS = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown", ".html": "html",
         ".htm": "html", ".pdf": "pdf", ".docx": "docx"}
ACCEPT = ".txt,.md,.markdown,.html,.htm,.pdf,.docx"
# HTML parts that are never the page's content.
_HTML_CHROME = "script, style, noscript, template, nav, header, footer, aside, form, svg, iframe, button"
_HTML_BLOCKS = ("h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "pre", "blockquote", "td", "th", "dt", "dd",
                "figcaption", "caption")
MAX_UNPACKED = 200 * 1024 * 1024  # what a DOCX may unpack to (a zip of a few MB can claim gigabytes)
_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


class DocumentError(ValueError):
    """A file that cannot become a document; the message says why and what to do."""


@dataclass(frozen=True)
class Block:
    text: str
    page: int | None = None  # 1-based, for formats with pages
    level: int = 0  # heading level 1..6; 0 for body text


@dataclass
class Parsed:
    kind: str
    title: str
    blocks: list[Block]
    pages: int | None = None


@dataclass(frozen=True)
class Chunk:
    text: str
    start: int  # character offsets in the document's text
    end: int
    page: int | None
    heading: str  # the headings above the chunk, outermost first, joined by " › "
    page_end: int | None = None  # the page the chunk ends on, when it runs over a page break


@dataclass
class Composed:
    """A parsed document laid out as one text (headings as Markdown) with where each block sits."""

    text: str
    spans: list[tuple[int, int, Block]] = field(default_factory=list)


def kind_of(name: str) -> str:
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    kind = KINDS.get(suffix)
    if kind is None:
        raise DocumentError(f"{name}: unsupported type {suffix or '(no extension)'}; upload .txt, .md, .html, "
                            ".pdf or .docx")
    return kind


def _decode(name: str, data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        if b"\x00" in data[:4096]:
            raise DocumentError(f"{name}: this is a binary file, not text") from None
        # Text files from older editors are often Windows-1252; Latin-1 reads any byte.
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError:
            return data.decode("latin-1")


def _clean(text: str) -> str:
    return re.sub(r"[ \t\f\v\u00a0]+", " ", text.replace("\r\n", "\n").replace("\r", "\n")).strip()


def _paragraphs(text: str, page: int | None = None) -> Iterator[Block]:
    for para in re.split(r"\n\s*\n", text):
        para = _clean(para)
        if para:
            yield Block(para, page)


def parse_text(name: str, data: bytes) -> Parsed:
    text = _decode(name, data)
    return Parsed("text", _stem(name), list(_paragraphs(text)))


def parse_markdown(name: str, data: bytes) -> Parsed:
    text = _decode(name, data)
    blocks: list[Block] = []
    body: list[str] = []
    in_fence = False

    def flush() -> None:
        blocks.extend(_paragraphs("\n".join(body)))
        body.clear()

    fence: list[str] = []
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            if not in_fence:
                flush()
                fence = [line]
            else:  # a code block is one block, its indentation and blank lines kept
                blocks.append(Block("\n".join([*fence, line]).strip("\n")))
                fence = []
            in_fence = not in_fence
            continue
        if in_fence:
            fence.append(line)
            continue
        m = _MD_HEADING.match(line)
        if m:
            flush()
            blocks.append(Block(m.group(2).strip(), level=len(m.group(1))))
        else:
            body.append(line)
    if fence:  # an unclosed fence runs to the end of the file
        blocks.append(Block("\n".join(fence).strip("\n")))
    flush()
    title = next((b.text for b in blocks if b.level == 1), _stem(name))
    return Parsed("markdown", title, blocks)


def parse_html(name: str, data: bytes) -> Parsed:
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(_decode(name, data))
    title_node = tree.css_first("title")
    title = _clean(title_node.text()) if title_node else ""
    for node in tree.css(_HTML_CHROME):
        node.decompose()
    root = tree.css_first("main") or tree.css_first("article") or tree.body or tree.root
    if root is None:
        raise DocumentError(f"{name}: no HTML body to read")
    blocks: list[Block] = []
    for node in root.css(", ".join((*_HTML_BLOCKS, "div"))):
        # Text in a <div> counts when the div holds no block of its own (pages put whole paragraphs in
        # divs); a div around blocks is read through them.
        if node.tag == "div" and any(inner.mem_id != node.mem_id
                                     for inner in node.css(", ".join((*_HTML_BLOCKS, "div")))):
            continue
        # A block inside another block (a paragraph in a list item) is read with its container.
        parent, nested = node.parent, False
        while parent is not None and parent is not root:
            if parent.tag in _HTML_BLOCKS:
                nested = True
                break
            parent = parent.parent
        if nested:
            continue
        text = _clean(node.text(deep=True, separator="", strip=False))
        if text:
            level = int(node.tag[1]) if re.fullmatch(r"h[1-6]", node.tag or "") else 0
            blocks.append(Block(text, level=level))
    if not blocks:  # a page of bare text in <body> or <div>s
        blocks = list(_paragraphs(root.text(deep=True, separator="\n")))
    title = title or next((b.text for b in blocks if b.level == 1), _stem(name))
    return Parsed("html", title, blocks)


def parse_pdf(name: str, data: bytes, *, max_pages: int) -> Parsed:
    from pypdf import PdfReader

    if not data.lstrip()[:5].startswith(b"%PDF"):
        raise DocumentError(f"{name}: not a PDF file (it does not start with %PDF)")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            # Many PDFs carry only an owner password (printing limits) and open with an empty one.
            try:
                opened = reader.decrypt("")
            except Exception:
                opened = 0
            if not opened:
                raise DocumentError(f"{name}: the PDF is encrypted; remove its password and upload it again")
        n_pages = len(reader.pages)
        if n_pages > max_pages:
            raise DocumentError(f"{name}: {n_pages} pages; the limit is {max_pages} (documents.max_pages)")
        blocks: list[Block] = []
        for number, page in enumerate(reader.pages, start=1):
            blocks.extend(_paragraphs(page.extract_text() or "", number))
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except DocumentError:
        raise
    except Exception as exc:  # a broken file may fail anywhere inside the parser (PdfReadError included)
        raise DocumentError(f"{name}: the PDF could not be read ({type(exc).__name__}: {exc})") from None
    return Parsed("pdf", _clean(str(meta_title)) or _stem(name), blocks, pages=n_pages)


def parse_docx(name: str, data: bytes) -> Parsed:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise DocumentError(f"{name}: not a DOCX file (a DOCX is a zip archive)")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        unpacked = sum(info.file_size for info in archive.infolist())
    if unpacked > MAX_UNPACKED:
        raise DocumentError(f"{name}: unpacks to {unpacked // 1048576} MB; at most {MAX_UNPACKED // 1048576} MB "
                            "is read from a DOCX")
    try:
        document = docx.Document(io.BytesIO(data))
        blocks: list[Block] = []
        for item in document.iter_inner_content():
            if isinstance(item, Paragraph):
                text = _clean(item.text)
                style = (item.style.name if item.style is not None else "") or ""
                m = re.fullmatch(r"Heading (\d)", style)
                level = int(m.group(1)) if m else (1 if style == "Title" else 0)
                if text:
                    blocks.append(Block(text, level=min(level, 6)))
            elif isinstance(item, Table):
                for row in item.rows:
                    cells = [_clean(c.text) for c in row.cells]
                    line = " | ".join(c for c in dict.fromkeys(cells) if c)  # merged cells repeat
                    if line:
                        blocks.append(Block(line))
        title = _clean(document.core_properties.title or "")
    except Exception as exc:  # a broken file may fail anywhere inside the parser (XML errors included)
        raise DocumentError(f"{name}: the DOCX could not be read ({type(exc).__name__}: {exc})") from None
    return Parsed("docx", title or next((b.text for b in blocks if b.level == 1), _stem(name)), blocks)


def _stem(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[0] if "." in base else base


def parse(name: str, data: bytes, *, max_pages: int = 500) -> Parsed:
    """Read a file by its extension; DocumentError when it is empty, unreadable or holds no text."""
    kind = kind_of(name)
    if not data:
        raise DocumentError(f"{name}: the file is empty")
    if kind == "pdf":
        parsed = parse_pdf(name, data, max_pages=max_pages)
    elif kind == "docx":
        parsed = parse_docx(name, data)
    elif kind == "html":
        parsed = parse_html(name, data)
    elif kind == "markdown":
        parsed = parse_markdown(name, data)
    else:
        parsed = parse_text(name, data)
    if not any(b.text.strip() for b in parsed.blocks if b.level == 0):
        hint = " (a scanned PDF needs text recognition first)" if kind == "pdf" else ""
        raise DocumentError(f"{name}: no text found in the file{hint}")
    return parsed


def section_of(title: str, heading: str) -> str:
    """A chunk's heading trail without the document's own title at its head (a top heading that repeats the
    title says nothing new): "Handbook › Sheds" under the title "Handbook" is "Sheds"."""
    if heading == title:
        return ""
    return heading[len(title) + 3:] if title and heading.startswith(title + " › ") else heading


def compose(parsed: Parsed) -> Composed:
    out = Composed("")
    parts: list[str] = []
    at = 0
    for block in parsed.blocks:
        text = ("#" * block.level + " " + block.text) if block.level else block.text
        if parts:
            at += 2
        out.spans.append((at, at + len(text), block))
        parts.append(text)
        at += len(text)
    out.text = "\n\n".join(parts)
    return out


def split(parsed: Parsed, *, chunk_chars: int, overlap_chars: int) -> tuple[str, list[Chunk]]:
    """The document's text and its chunks (structure-aware, overlapping), each with its provenance."""
    composed = compose(parsed)
    low = max(1, chunk_chars // 2)
    overlap = max(0, min(overlap_chars, low - 1))
    splitter: MarkdownSplitter | TextSplitter
    if parsed.kind in ("pdf", "text"):
        splitter = TextSplitter((low, chunk_chars), overlap=overlap)
    else:
        splitter = MarkdownSplitter((low, chunk_chars), overlap=overlap)
    chunks: list[Chunk] = []
    span_index = 0
    headings: list[tuple[int, str]] = []  # (level, text) open at the current position
    spans = composed.spans
    starts = [s for s, _, _ in spans]
    for start, text in splitter.chunk_indices(composed.text):
        # Walk the blocks up to this chunk's start, keeping the heading trail.
        while span_index < len(spans) and spans[span_index][0] <= start:
            block = spans[span_index][2]
            if block.level:
                headings = [h for h in headings if h[0] < block.level] + [(block.level, block.text)]
            span_index += 1
        current = spans[max(0, span_index - 1)][2] if spans else None
        page = current.page if current else None
        end = start + len(text)
        at = bisect.bisect_left(starts, end) - 1
        last = spans[at][2] if at >= 0 else current
        page_end = last.page if last is not None and last.page != page else None
        chunks.append(Chunk(text, start, end, page, " › ".join(h for _, h in headings), page_end))
    return composed.text, _merge_bare_headings(composed.text, chunks)


_BARE_HEADINGS = re.compile(r"(?:#{1,6} [^\n]*\s*)+")


def _merge_bare_headings(text: str, chunks: list[Chunk]) -> list[Chunk]:
    """A chunk of headings alone (a section longer than a chunk leaves its heading behind) says nothing:
    it joins the chunk after it, which then starts at the heading."""
    merged: list[Chunk] = []
    carry: Chunk | None = None
    for chunk in chunks:
        if carry is not None:
            chunk = Chunk(text[carry.start:chunk.end], carry.start, chunk.end, carry.page, chunk.heading,
                          chunk.page_end or (chunk.page if chunk.page != carry.page else None))
            carry = None
        if _BARE_HEADINGS.fullmatch(chunk.text) and chunk is not chunks[-1]:
            carry = chunk
            continue
        merged.append(chunk)
    return merged
