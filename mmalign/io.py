"""Atomic file writes and JSONL helpers shared by train, pairs and evals.

Every file another process (or a resumed run) may read back is written to a temporary
file in the same folder and renamed into place, so a kill never leaves a half file.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files 0600; a written file gets the mode open() would give it (0666 & ~umask).
FILE_MODE = 0o666 & ~_umask()
DIR_MODE = 0o777 & ~_umask()  # likewise for mkdtemp's 0700 folders


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    # Errors name the file the caller writes, not the temporary one beside it.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except FileExistsError:  # from mkdir: a file stands where one of its folders should be
        raise NotADirectoryError(errno.ENOTDIR, "a file stands where its folder should be", str(path)) from None
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # e.g. a folder where the file should be: os.replace names the temporary file
        Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_figure(path: str | os.PathLike, fig, dpi: int) -> None:
    """A matplotlib figure as a PNG file, written atomically (savefig alone leaves a torn file
    when killed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def append_jsonl(path: str | os.PathLike, row: Any) -> None:
    """Append one line and fsync: for logs that grow (metrics), where a torn last line is
    tolerated by `iter_jsonl(..., skip_torn_tail=True)`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_user_text(path: str | os.PathLike, what: str, encoding: str = "utf-8") -> str:
    """The text of a file the user named (`what`: "a predictions file", ...), or a one-line
    ConfigError saying why it cannot be read: missing, a folder, unreadable, not text."""
    try:
        return Path(path).read_text(encoding=encoding)
    except (OSError, UnicodeDecodeError) as e:
        from mmalign.config import ConfigError

        raise ConfigError(f"{path}: cannot be read as {what} ({type(e).__name__}: "
                          f"{getattr(e, 'strerror', None) or e})") from None


_SPACE = re.compile(r"\s*")


def json_array_items(text: str) -> list[tuple[int, str]]:
    """Each element of a JSON array document as (the line it starts on, its JSON text), so that
    a reader of one object per line also reads LLaMA-Factory's `.json` data files (one
    pretty-printed array) and still names each element's line. json.JSONDecodeError (with its
    line and column) where the document is not one JSON array."""
    decoder, items = json.JSONDecoder(), []
    i = _SPACE.match(text).end()
    if text[i:i + 1] != "[":
        raise json.JSONDecodeError("Expecting '['", text, i)
    i = _SPACE.match(text, i + 1).end()
    line, counted = 1, 0  # lines counted up to `counted`, so the whole file is scanned once
    while text[i:i + 1] != "]":
        try:
            _, end = decoder.raw_decode(text, i)
        except RecursionError:
            raise json.JSONDecodeError("nested too deeply", text, i) from None
        line, counted = line + text.count("\n", counted, i), i
        items.append((line, text[i:end]))
        i = _SPACE.match(text, end).end()
        if text[i:i + 1] == ",":
            i = _SPACE.match(text, i + 1).end()
        elif text[i:i + 1] != "]":
            raise json.JSONDecodeError("Expecting ',' or ']'", text, i)
    rest = _SPACE.match(text, i + 1).end()
    if rest < len(text):
        raise json.JSONDecodeError("Extra data after the array", text, rest)
    return items


def json_array_document(text: str) -> list[tuple[int, str]] | None:
    """`json_array_items(text)` where the text is one JSON array, None where it is one JSON
    value per line (a JSONL file whose first line is an array stays JSONL: its lines are read
    one by one). JSONDecodeError where it starts an array that is not valid JSON."""
    if not text.lstrip().startswith("["):
        return None
    try:
        return json_array_items(text)
    except json.JSONDecodeError as e:
        error = e
    first = next(line for line in text.splitlines() if line.strip())
    try:
        json.loads(first)
    except (ValueError, RecursionError):
        raise error from None  # the array's own error, with its line
    return None


def broken_array(path, e: json.JSONDecodeError) -> str:
    """`path`:line: why a file that starts a JSON array is not one (`json_array_document`)."""
    return f"{path}:{e.lineno}: a JSON array file, but not valid JSON ({e.msg} at column {e.colno})"


def check_output_folder(path: str | os.PathLike, key: str) -> None:
    """Refuse, in one line naming `key` (output_dir, --out), a folder a command would write into
    where a file stands: on the folder itself or on one of the folders above it. Checked before
    any work, not when the first file is written."""
    path = Path(path).absolute()
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                from mmalign.config import ConfigError

                where = "a file, not a folder" if folder == path else f"{folder} is a file, not a folder"
                raise ConfigError(f"{key} {path}: {where}")
            return


def lies_under(path: str | os.PathLike, folders) -> bool:
    """Whether `path` is inside one of `folders`, each by its real location (symlinks resolved)."""
    real = Path(path).resolve()
    return any(real.is_relative_to(Path(f).resolve()) for f in folders)


def iter_jsonl(path: str | os.PathLike, skip_torn_tail: bool = False) -> Iterator[tuple[int, Any]]:
    """Yield (line_number, object) for each non-empty line; a bad line raises ValueError
    naming the file and line, except a torn final line when `skip_torn_tail` is set."""
    path = Path(path)
    lines = path.read_bytes().split(b"\n")
    for i, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            yield i, json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            is_tail = all(not l.strip() for l in lines[i:])
            if skip_torn_tail and is_tail:
                return
            raise ValueError(f"{path}:{i}: not a JSON line ({e})") from None


def cut_torn_tail(path: str | os.PathLike) -> None:
    """Drop an unfinished last line (a kill during the write) before appending after it: the
    next line would otherwise be glued to the torn bytes."""
    path = Path(path)
    if not path.exists():
        return
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    tail = data[keep:]
    if tail.strip():
        try:
            json.loads(tail)
            with open(path, "ab") as f:  # a whole line that only lacks its newline
                f.write(b"\n")
            return
        except ValueError:
            pass
    if keep < len(data):
        with open(path, "r+b") as f:
            f.truncate(keep)


def write_result_json(path: str | os.PathLike, obj: Any, root: str | os.PathLike, indent: int = 1,
                      work: str | os.PathLike | None = None) -> None:
    """A benchmark's result file, with every path under `root` (the repository) written relative
    to it, and every path under `work` (a benchmark's folder of intermediate runs, when it lies
    outside the repository) as $WORK/...: committed results name no folder of the machine they
    ran on."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False, default=str)
    folders = {str(Path(root).resolve()) + "/": ""}
    if work is not None and not lies_under(work, [root]):
        folders |= {str(Path(work).resolve()) + "/": "$WORK/", str(Path(work).absolute()) + "/": "$WORK/"}
    for folder, name in sorted(folders.items(), key=lambda f: -len(f[0])):  # a deeper folder first
        text = text.replace(folder, name)
    atomic_write_text(path, text + "\n")
