"""The results page: one self-contained HTML document built as a string (no I/O here).

Thumbnails are inline ``data:`` URIs and the page has a Content-Security-Policy that allows nothing else (no
scripts, no network), so it can be mailed or opened anywhere. Every piece of text is escaped with
:func:`html.escape`; the page is assembled only from escaped strings and numbers formatted here.
"""

import base64
import html
import urllib.parse
from dataclasses import dataclass, field

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
h1 { font-size: 1.3em; margin: 0 0 .3em; }
.meta { color: #666; margin: 0 0 1.2em; }
section.query { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 1em; margin: 0 0 1.5em; }
h2 { font-size: 1.05em; margin: 0 0 .6em; word-break: break-all; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 14px; }
figure { margin: 0; }
figure.probe { max-width: 340px; margin-bottom: 1em; }
.frame { height: 220px; display: flex; align-items: center; justify-content: center; background: #f0f0f0; }
.frame img { max-width: 100%; max-height: 220px; display: block; }
.frame a { display: contents; }
.bar span.other { background: repeating-linear-gradient(45deg, #bbb 0 3px, #eee 3px 6px); }
.likeness { font-weight: 600; }
.bar { display: flex; height: 10px; margin: 5px 0 3px; border: 1px solid #ccc; }
.bar span { display: block; height: 100%; }
figcaption { font-size: 12px; overflow-wrap: anywhere; }
.rank { font-weight: 600; }
.distance { color: #555; font-variant-numeric: tabular-nums; }
.note { color: #a33; }
section.group .row { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
section.group figure { width: 200px; }
figure.keeper .frame { outline: 3px solid #2a7; }
.why { color: #555; margin: -.3em 0 .7em; }
"""


@dataclass(frozen=True)
class Picture:
    """One picture on the page.

    name : str, short label (file name or colour target); title : str, tooltip (the file's path as shown)
    thumbnail : bytes, encoded image; mime : its media type
    makeup : list of (hex colour "#rrggbb", share) pairs, the colour make-up bar
    rank, distance : for ranked results; None for the query
    note : str or None, e.g. why the file could not be shown
    link : str or None, the file's path the thumbnail links to: relative to the page, or absolute when
        ``absolute_link``
    likeness : float or None, 0..1, shown as a percentage under the distance, followed by ``likeness_label``
    lines : more caption lines under the name (plain text)
    """

    name: str
    title: str
    thumbnail: bytes
    mime: str = "image/jpeg"
    makeup: list = field(default_factory=list)
    rank: int = None
    distance: float = None
    note: str = None
    link: str = None
    absolute_link: bool = False
    likeness: float = None
    likeness_label: str = "colours in common"
    lines: tuple = ()


@dataclass(frozen=True)
class Section:
    """One query and its ranked results."""

    query: Picture
    results: list


def data_uri(data, mime):
    """``data:`` URI of some bytes: str."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _hex(colour):
    value = str(colour).lower()
    if len(value) != 7 or value[0] != "#" or any(c not in "0123456789abcdef" for c in value[1:]):
        raise ValueError(f"colour must be '#rrggbb', got {colour!r}")
    return value


def makeup_bar(makeup, smallest=0.005):
    """The colour make-up as a row of spans, each as wide as its share; shares under ``smallest`` are drawn
    together as one hatched "other colours" span, so the bar always fills its width."""
    total = sum(share for _, share in makeup) or 1.0
    shown = [(colour, share / total) for colour, share in makeup if share / total >= smallest]
    other = 1.0 - sum(share for _, share in shown)
    spans = "".join(f'<span style="width:{100 * share:.2f}%;background:{_hex(colour)}" '
                    f'title="{_hex(colour)} {100 * share:.1f}%"></span>' for colour, share in shown)
    if other > 1e-9 and makeup:
        spans += (f'<span class="other" style="width:{100 * other:.2f}%" '
                  f'title="other colours, each under {100 * smallest:g}%: {100 * other:.1f}% in all"></span>')
    return f'<div class="bar" role="img" aria-label="colour make-up">{spans}</div>'


def file_url(path, absolute):
    """The href of a file: a relative URL of a path relative to the page, or a ``file://`` URL of an absolute
    path (every character that could end the attribute or the URL percent-encoded)."""
    quoted = urllib.parse.quote(path, safe="/")
    return f"file://{quoted}" if absolute else quoted


def _figure(picture, css_class):
    e = html.escape
    lines = []
    if picture.rank is not None:
        likeness = ("" if picture.likeness is None else
                    f'<br><span class="likeness">{100 * float(picture.likeness):.0f}%</span> {e(picture.likeness_label)}')
        lines.append(f'<span class="rank">#{int(picture.rank)}</span> '
                     f'<span class="distance">d = {float(picture.distance):.4f}</span>{likeness}<br>')
    lines.append(f'<span class="name">{e(picture.name)}</span>')
    lines.extend(f'<br><span class="distance">{e(line)}</span>' for line in picture.lines)
    if picture.note:
        lines.append(f'<br><span class="note">{e(picture.note)}</span>')
    image = f'<img src="{data_uri(picture.thumbnail, e(picture.mime))}" alt="{e(picture.name)}">'
    if picture.link is not None:
        image = f'<a href="{e(file_url(picture.link, picture.absolute_link))}">{image}</a>'
    return (f'<figure class="{css_class}" title="{e(picture.title)}"><div class="frame">{image}</div>'
            f'{makeup_bar(picture.makeup)}<figcaption>{"".join(lines)}</figcaption></figure>')


def results_page(sections, title="cbir results", meta=""):
    """The results page for one or more queries.

    Parameters
    ----------
    sections : list of Section, one per query, results best first
    title : str, page title
    meta : str, one line under the title (e.g. the database and its settings)

    Returns
    -------
    page : str, a complete HTML5 document
    """
    e = html.escape
    body = []
    for number, section in enumerate(sections, 1):
        results = "".join(_figure(result, "result") for result in section.results)
        body.append(
            f'<section class="query" data-results="{len(section.results)}">'
            f'<h2>Query {number}: {e(section.query.name)}</h2>{_figure(section.query, "probe")}'
            f'<div class="grid">{results or "<p>No indexed images.</p>"}</div></section>')
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{e(CSP)}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{e(title)}</title><style>{_STYLE}</style></head>\n<body><h1>{e(title)}</h1>'
            f'<p class="meta">{e(meta)}</p>\n' + "\n".join(body) + "\n</body></html>\n")


@dataclass(frozen=True)
class Group:
    """Pictures shown side by side under a heading: a group of copies, the suggested keeper first."""

    heading: str
    why: str
    pictures: list


def groups_page(groups, title="cbir duplicates", meta=""):
    """A page of groups of pictures side by side (the first of each group framed as the one to keep).

    Parameters
    ----------
    groups : list of Group
    title : str, page title; meta : str, one line under the title

    Returns
    -------
    page : str, a complete HTML5 document
    """
    e = html.escape
    body = []
    for group in groups:
        figures = "".join(_figure(p, "keeper" if k == 0 else "copy") for k, p in enumerate(group.pictures))
        body.append(f'<section class="query group" data-members="{len(group.pictures)}"><h2>{e(group.heading)}</h2>'
                    f'<p class="why">{e(group.why)}</p><div class="row">{figures}</div></section>')
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{e(CSP)}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{e(title)}</title><style>{_STYLE}</style></head>\n<body><h1>{e(title)}</h1>'
            f'<p class="meta">{e(meta)}</p>\n' + ("\n".join(body) or "<p>No duplicates found.</p>") + "\n</body></html>\n")
