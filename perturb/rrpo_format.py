"""The RRPO release format (pritamqu/RRPO, docs/DATA.md) to and from our pair records, so
released pair sets train directly and ours train with the official code:

    {"sample_id": ..., "question": "<image>\\nDescribe ...", "answer": chosen, "pred": rejected,
     "answer_masked": "a <MASK> red </MASK> car", "pred_masked": "a <MASK> blue </MASK> car",
     "video": "videos/v.mp4", "media_path": "videos/v.mp4", "src": "perturb.inject"}

Reading is mmalign.data.records' (tags -> spans, placeholders removed, other fields -> meta);
this module adds the file handling around it and the writing direction. A record without spans
gets them from the differ. An empty span (an insertion) is written "<MASK>  </MASK>", which
reads back as the same empty span; the official loss sees no token in it. Fields the format
has no place for (difficulty, rejected_video, Mask-DPO's sentence labels, meta) are written
under our names: RRPO's loader ignores them, ours reads them back, so nothing is lost.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mmalign.config import ConfigError
from mmalign.data.records import (FIXES, Record, Skipped, no_usable_records, read_records, spans_to_mask_tags,
                                  write_records)
from mmalign.io import atomic_write_jsonl, atomic_write_text, read_user_text

from .diff import diff_spans


def to_rrpo(record: Record, folder: str | os.PathLike, placeholder: str = "<image>\n") -> dict:
    """One release-format object; media paths relative to `folder` where they lie inside it.
    ValueError if a text already holds a <MASK> tag."""
    if record.chosen is None or record.rejected is None:
        raise ValueError("not a pair record (no chosen / rejected)")
    spans = (record.chosen_spans, record.rejected_spans)
    if spans[0] is None or spans[1] is None:
        spans = diff_spans(record.chosen, record.rejected)
    row = {"sample_id": record.id, "question": placeholder + record.prompt, "answer": record.chosen,
           "pred": record.rejected, "answer_masked": spans_to_mask_tags(record.chosen, spans[0]),
           "pred_masked": spans_to_mask_tags(record.rejected, spans[1]),
           "src": record.meta.get("generator", "mmalign")}
    if record.video is not None:
        row["video"] = row["media_path"] = _media(record.video, folder)
    for name in ("difficulty", "system", "history"):  # ours, carried as they are (RRPO's code reads none of them)
        if getattr(record, name) is not None:
            row[name] = getattr(record, name)
    for side in ("chosen", "rejected"):
        if getattr(record, f"{side}_sentence_labels") is not None:
            row[f"{side}_sentence_labels"] = getattr(record, f"{side}_sentence_labels")
    if record.rejected_video is not None:
        row["rejected_video"] = {k: _media(v, folder) if k in ("source", "video") else v
                                 for k, v in record.rejected_video.items()}
    meta = {k: v for k, v in record.meta.items() if k != "format"}
    if meta:
        row["meta"] = meta
    return row


def _media(path: str, folder) -> str:
    folder = str(Path(folder).absolute())
    inside = os.path.commonpath([path, folder]) == folder if os.path.isabs(path) else False
    return os.path.relpath(path, folder) if inside else path


def export_rrpo(src: str | os.PathLike, out: str | os.PathLike,
                placeholder: str = "<image>\n") -> tuple[int, list[Skipped]]:
    """Our pair file -> the release format: a JSON array for .json, else JSON lines. Returns how
    many rows were written and the lines skipped."""
    _refuse_overwriting_input(src, out)
    records, skipped = read_records(src, "pair", allow_absolute_paths=True, check_media=False)
    folder = Path(out).absolute().parent
    rows = []
    for r in records:
        try:
            rows.append(to_rrpo(r, folder, placeholder))
        except ValueError as e:
            skipped.append(Skipped(r.source, r.id, str(e)))
    if not rows:  # an empty file would overwrite what `out` held, and tell a script it worked
        raise no_usable_records(str(src), skipped)
    if str(out).endswith(".json"):
        atomic_write_text(out, json.dumps(rows, ensure_ascii=False, indent=1) + "\n")
    else:
        atomic_write_jsonl(out, rows)
    return len(rows), skipped


def import_rrpo(src: str | os.PathLike, out: str | os.PathLike, media_root: str | os.PathLike | None = None,
                check_media: bool = False) -> tuple[list[Record], list[Skipped]]:
    """A release file (JSON array or JSON lines) -> our pair records in `out`. Media paths are
    resolved against `media_root` (default: the file's folder) and written relative to `out`
    where they lie inside its folder, absolute otherwise (train those with
    data.allow_absolute_paths)."""
    _refuse_overwriting_input(src, out)
    src, out = Path(src), Path(out).absolute()
    root = Path(media_root or src.parent).absolute()
    if media_root is not None and not root.is_dir():  # every path would point nowhere, and be written so
        raise ConfigError(f"--media-root {media_root}: no such folder")
    rows, where, bad = _load_rows(src)
    for row in rows:
        for key in ("media_path", "video"):
            if isinstance(row, dict) and isinstance(row.get(key), str) and row[key] and not os.path.isabs(row[key]):
                row[key] = str(root / row[key])
    tmp = out.parent / f".{out.name}.import.jsonl"
    try:
        atomic_write_jsonl(tmp, rows)
        records, skipped = read_records(tmp, "pair", allow_absolute_paths=True, check_media=check_media)
    finally:
        tmp.unlink(missing_ok=True)
    for s in skipped:  # the place in the file the user gave, not in the converted copy
        s.source = where[int(s.source.rsplit(":", 1)[1]) - 1]
    if not records:
        where_media = f"the release's media paths are read under {'--media-root ' if media_root else ''}{root}"
        raise no_usable_records(str(src), bad + skipped, fixes=(("file not found", where_media),) + FIXES)
    write_records(out, records)
    return records, bad + skipped


def _refuse_overwriting_input(src, out) -> None:
    """--out naming the input (or a link to it) would replace the file being converted."""
    if os.path.realpath(src) == os.path.realpath(out):
        raise ConfigError(f"--out {out}: is the input file; write the converted records elsewhere")


def _load_rows(path: Path) -> tuple[list, list[str], list[Skipped]]:
    """The release file's rows, where each one is in it (file:line for JSON lines, "file: item N"
    for an array), and its lines that are not JSON (skipped by file:line, as a record the reader
    refuses is). A file that cannot be read at all is a one-line ConfigError."""
    text = read_user_text(path, "an RRPO release file", encoding="utf-8-sig")
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except ValueError as e:
            raise ConfigError(f"{path}: not a JSON array ({type(e).__name__}: {e})") from None
        return rows, [f"{path}: item {i}" for i in range(1, len(rows) + 1)], []
    rows, where, bad = [], [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
            where.append(f"{path}:{lineno}")
        except ValueError as e:
            bad.append(Skipped(f"{path}:{lineno}", None, f"not JSON ({type(e).__name__}: {e})"))
    return rows, where, bad
