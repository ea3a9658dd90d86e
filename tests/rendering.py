"""LaTeX as a renderer sees it: KaTeX run by node, and a check of LaTeX text mode.

KaTeX is installed once, pinned, into ``<repo>/.cache/katex`` by npm (about a second
when the registry is reachable) and run as one node process per test session, which
answers batch after batch (``katex_check.js``). Every string is rendered strictly:
``throwOnError``, ``strict: "error"`` (what LaTeX itself would reject, such as Unicode
letters in maths, is an error) and any warning KaTeX prints is an error too.

The pieces of a document are read out of what the package emits: the inside of a
``_repr_latex_``'s ``$...$``, the ``$$...$$`` and ``$...$`` of Markdown, and the
``\\[...\\]`` blocks, ``\\paragraph{...}`` titles and prose of a LaTeX document.
KaTeX has no ``\\paragraph``, and its ``\\text{...}`` lets through characters that
LaTeX sets as other glyphs, so prose is also checked by :func:`text_errors`.
"""

from __future__ import annotations

import json
import re
import selectors
import shutil
import subprocess
from pathlib import Path

#: The newest KaTeX whose dependencies install on Node 20 without engine warnings
#: (0.17 and later pull in commander 15, which asks for Node 22).
KATEX_VERSION = "0.16.47"
ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "katex"
SCRIPT = Path(__file__).resolve().with_name("katex_check.js")
TIMEOUT = 120  # seconds, for npm and for one batch


class Unavailable(Exception):
    """node or npm is not on this machine."""


def installed_version(prefix: Path = CACHE) -> str | None:
    manifest = prefix / "node_modules" / "katex" / "package.json"
    try:
        return json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def install(prefix: Path = CACHE, version: str = KATEX_VERSION) -> Path:
    """KaTeX ``version`` under ``prefix``, installed with npm unless it is there already.

    Raises :class:`Unavailable` when node or npm is missing, RuntimeError when npm fails.
    """
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        raise Unavailable(
            f"{' and '.join(missing)} not found: rendering LaTeX with KaTeX needs Node.js "
            "and npm (https://nodejs.org)"
        )
    if installed_version(prefix) != version:
        command = [
            shutil.which("npm"),
            "install",
            "--no-save",
            "--no-audit",
            "--no-fund",
            "--prefix",
            str(prefix),
            f"katex@{version}",
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT)
        if done.returncode != 0 or installed_version(prefix) != version:
            raise RuntimeError(
                f"`{' '.join(command[1:])}` failed (exit {done.returncode}):\n{done.stderr}"
            )
    return prefix


class KaTeX:
    """One node process running KaTeX; :meth:`errors` renders a batch."""

    def __init__(self, prefix: Path = CACHE):
        self._process = subprocess.Popen(
            [shutil.which("node"), str(SCRIPT), str(prefix)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self.version = None

    def errors(self, items) -> list[str | None]:
        """One error message or None per item; an item is a string (rendered in display
        mode) or a pair ``(source, display)``."""
        batch = [
            {"src": item, "display": True}
            if isinstance(item, str)
            else {"src": item[0], "display": bool(item[1])}
            for item in items
        ]
        if not batch:
            return []
        self._process.stdin.write(json.dumps(batch) + "\n")
        self._process.stdin.flush()
        with selectors.DefaultSelector() as selector:
            selector.register(self._process.stdout, selectors.EVENT_READ)
            ready = selector.select(TIMEOUT)
        line = self._process.stdout.readline() if ready else ""
        if not line:
            message = self._stderr()
            self.close()
            raise RuntimeError(f"KaTeX's node process gave no answer within {TIMEOUT} s: {message}")
        answer = json.loads(line)
        self.version = answer["version"]
        return answer["errors"]

    def _stderr(self) -> str:
        self._process.kill()
        try:
            return self._process.communicate(timeout=5)[1]
        except (subprocess.TimeoutExpired, ValueError, OSError):
            return ""

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.stdin.close()  # node ends when its input does
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        for stream in (self._process.stdin, self._process.stdout, self._process.stderr):
            stream.close()


# -- reading the maths and the prose out of what the package emits ----------------


def from_repr_latex(out: str) -> tuple[str, bool]:
    """The maths of a ``_repr_latex_``: ``$...$`` with no other ``$`` in it, rendered
    inline (as Jupyter does), so that ``\\displaystyle`` inside is what makes it big."""
    if not (len(out) > 2 and out[0] == out[-1] == "$" and out[1] != "$"):
        raise AssertionError(f"_repr_latex_ should be one $...$, got {out[:80]!r}")
    inner = out[1:-1]
    if re.search(r"(?<!\\)\$", inner):
        raise AssertionError(f"a $ inside the $...$ of a _repr_latex_: {out[:200]!r}")
    return inner, False


def _split_dollars(text: str) -> tuple[list[tuple[str, bool]], list[str]]:
    """``$$...$$`` (display) and ``$...$`` (inline) maths, and the text around them."""
    maths, prose, k, start = [], [], 0, 0
    while k < len(text):
        if text[k] == "\\":
            k += 2
            continue
        if text[k] != "$":
            k += 1
            continue
        prose.append(text[start:k])
        fence = "$$" if text.startswith("$$", k) else "$"
        end = k + len(fence)
        while True:
            end = text.find(fence, end)
            if end < 0:
                raise AssertionError(f"an unclosed {fence} at {text[k : k + 80]!r}")
            if text[end - 1] != "\\":
                break
            end += 1
        maths.append((text[k + len(fence) : end], fence == "$$"))
        k = start = end + len(fence)
    prose.append(text[start:])
    return maths, prose


def from_markdown(md: str) -> list[tuple[str, bool]]:
    """Every ``$$...$$`` and ``$...$`` of a Markdown text; the rest must hold no ``$``."""
    maths, _ = _split_dollars(md)
    return maths


def from_latex_document(tex: str) -> tuple[list[tuple[str, bool]], list[str]]:
    """The display maths ``\\[...\\]`` of a LaTeX body, and its prose: each sectioning
    title's argument, and each remaining line."""
    maths, prose = [], []
    rest = re.sub(
        r"\\\[(.*?)\\\]", lambda m: maths.append((m.group(1), True)) or "\n", tex, flags=re.S
    )
    for line in rest.splitlines():
        line = line.strip()
        heading = re.match(r"\\(?:sub)*(?:section\*?|paragraph)\{", line)
        if heading:
            argument, after = _argument(line, heading.end())
            prose.append(argument)
            line = after.strip()
        if line:
            prose.append(line)
    return maths, prose


def _argument(line: str, start: int) -> tuple[str, str]:
    """The braced argument opening at ``line[start - 1]``, and what follows it."""
    depth, k = 1, start
    while k < len(line):
        if line[k] == "\\":
            k += 2
            continue
        depth += {"{": 1, "}": -1}.get(line[k], 0)
        if depth == 0:
            return line[start:k], line[k + 1 :]
        k += 1
    raise AssertionError(f"an unbalanced brace in {line!r}")


#: Commands the package's prose may use: escapes of specials, and typewriter type.
TEXT_COMMANDS = {
    "textbackslash",
    "textasciicircum",
    "textasciitilde",
    "textless",
    "textgreater",
    "textbar",
    "textquotedblright",
    "texttt",
}
#: Characters LaTeX's text mode rejects or treats as markup, and characters that its
#: default (OT1) font encoding prints as other glyphs (< as an inverted exclamation
#: mark, | as an em dash, " as a closing quote): both need an escape or maths.
TEXT_SPECIALS = set("_^&%#~") | set('<>|"')


def text_errors(text: str) -> tuple[list[str], list[tuple[str, bool]]]:
    """What is wrong with ``text`` as LaTeX prose (text mode), and its ``$...$`` maths.

    Stricter than KaTeX's ``\\text{}``, which accepts ``~ < > | "`` and any command it
    knows: only the escapes ``\\_ \\& \\% \\$ \\# \\{ \\}``, the commands in
    TEXT_COMMANDS, balanced braces and ASCII letters pass.
    """
    errors, maths = [], []
    try:
        maths, prose = _split_dollars(text)
    except AssertionError as exc:
        return [str(exc)], []
    for part in prose:
        depth, k = 0, 0
        while k < len(part):
            c = part[k]
            if c == "\\":
                command = re.match(r"[A-Za-z]+|[_&%$#{} ,]", part[k + 1 :])
                if command is None:
                    errors.append(f"a bare backslash before {part[k + 1 : k + 2]!r}")
                    k += 2
                    continue
                if command.group()[0].isalpha() and command.group() not in TEXT_COMMANDS:
                    errors.append(f"an unexpected command \\{command.group()} in text")
                k += 1 + command.end()
                continue
            if c in TEXT_SPECIALS:
                errors.append(f"a bare {c!r} in text mode: {part[max(0, k - 20) : k + 20]!r}")
            elif not c.isascii():
                errors.append(f"a non-ASCII character {c!r} in text mode")
            elif c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth < 0:
                    errors.append(f"an unbalanced }} in {part!r}")
                    depth = 0
            k += 1
        if depth:
            errors.append(f"an unclosed {{ in {part!r}")
    return errors, maths
