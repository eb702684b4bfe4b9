"""Document files made in the test: text PDFs (written by hand, with a correct cross-reference table),
DOCX through python-docx, HTML and Markdown as strings."""
from __future__ import annotations

import io


def make_pdf(pages: list[list[str]], *, title: str = "") -> bytes:
    """A PDF whose pages hold these lines of text (Helvetica), one text line per entry."""
    objects: list[bytes] = []
    n_pages = len(pages)
    font_id = 3 + 2 * n_pages
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(n_pages))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode())
    for i, lines in enumerate(pages):
        content_id = 4 + 2 * i
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content_id} 0 R "
                       f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode())
        ops = ["BT", "/F1 11 Tf", "14 TL", "72 740 Td"]
        for line in lines:
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"({escaped}) Tj T*")
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1")
        objects.append(b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    info_id = None
    if title:
        objects.append(f"<< /Title ({title}) >>".encode("latin-1"))
        info_id = len(objects)
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    trailer = f"<< /Size {len(objects) + 1} /Root 1 0 R" + (f" /Info {info_id} 0 R" if info_id else "") + " >>"
    out.write(f"trailer\n{trailer}\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def encrypted_pdf(password: str = "s3cret") -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(make_pdf([["A locked page."]]))).pages:
        writer.add_page(page)
    writer.encrypt(user_password=password, owner_password=password + "-owner")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_docx(blocks: list[tuple[str, int]], *, table: list[list[str]] | None = None) -> bytes:
    """(text, heading level) pairs, level 0 for a paragraph; an optional table at the end."""
    import docx

    document = docx.Document()
    for text, level in blocks:
        if level:
            document.add_heading(text, level=level)
        else:
            document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, cell in enumerate(row):
                grid.cell(r, c).text = cell
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


HTML = """<!doctype html><html><head><title>Harbour Ferry Timetable</title>
<style>p { color: red }</style><script>var tracking = "do not index me";</script></head>
<body><nav><a href="/">Home</a> · <a href="/about">Menu link text</a></nav>
<main><h1>Harbour Ferry</h1><p>The first ferry leaves Pier 7 at <b>06:40</b> every weekday.</p>
<h2>Fares</h2><ul><li><p>An adult single costs 3.20 euros.</p></li><li>Bicycles travel free.</li></ul>
</main><footer>Footer words that are not content</footer></body></html>"""

MARKDOWN = """# Orchard Cooperative Handbook

An introduction to the cooperative.

## Harvest

Pickers start at dawn. The apple press runs on Thursdays only.

### Tools

Ladders are stored in shed B; the shed code is 5512.

## Payments

Members are paid on the last Friday of each month.
"""
