"""The record schema of DESIGN.md ("The pair record"): reading with per-line validation,
foreign formats, writing back.

Reading. `read_records(path, kind)` reads a JSONL file one line at a time, a file holding one
JSON array (LLaMA-Factory's `.json` files) one element at a time, each named by the line it
starts on, or a Parquet file (Hugging Face datasets) one row at a time, named by its row. A
line that cannot be used becomes a `Skipped(source="file:line", id, reason)` and the rest of
the file is still read; `strict=True` raises RecordError ("file:line: reason") at the first such line instead.
Blank lines are ignored. Media paths are relative to the file's folder (where it really is, for
a symbolic link to it; or to `media_dir`, data.media_dir) and come back absolute;
a path that leaves that folder (absolute, or through "..") is refused unless
`allow_absolute_paths`; with `check_media` a media file must exist (decoding problems are
found when it is loaded). A line without an "id" gets "sha1:<12 hex>" of its content, so the
id (which keys cached reference log-probs and per-record seeds) survives reordering the file.
A later line with an id already seen is skipped.

Fields. pair: prompt, chosen, rejected; sft: prompt, response; grpo: prompt (+ answer /
truth). Media: "video", or "images", or neither (text only). "system": the record's own system
message, which its prompt is encoded with (data.system_prompt serves the records without one;
an empty one is none). "history": the earlier turns of a conversation, [[user, assistant], ...]
before `prompt` (alpaca's shape); the media go with its first user turn. A pair's earlier turns
are its prompt's context; an SFT record trains every assistant answer, the history's and its
response (LLaMA-Factory's default), and a GRPO prompt is one turn. Unknown top-level fields are
refused ("unknown field 'vidoe' (did you mean 'video'?)") rather than ignored: a misspelt
"rejected_spans" must not silently train a different loss. Extra data goes under "meta".
TRL's preference columns (prompt, chosen, rejected, images) are already this schema.

Spans are [start, end) character offsets into their text, 0 <= start <= end <= len(text),
not overlapping; an empty span marks an insertion point (the world generator pairs an
inserted sentence with an empty chosen span). Sentence labels (1 = factual) count the
sentences that `sentence_spans` finds in their text.

Foreign formats, detected per line and converted to this schema (RRPO and Mask-DPO: pair
files only):
- RRPO release (pritamqu/RRPO): answer_masked / pred_masked with <MASK> ... </MASK> tags ->
  chosen / rejected + spans (see `mask_tags_to_spans`); the untagged text must equal
  answer / pred when those are given (the official code silently drops the weights when
  they differ; we skip the line). question -> prompt, with LLaVA's "<image>" / "<video>"
  placeholders removed (the chat template adds its own); media_path or video -> video;
  sample_id -> id; our own fields (difficulty, rejected_video, sentence labels, ...) as they
  are; other fields (src, ...) -> meta; meta["format"] = "rrpo".
- Mask-DPO (open-compass/ANAH): chosen_item / rejected_item = {"sents": [...], "type":
  ["hallucination" | "no_hallucination", ...]} -> text = " ".join(stripped sents), label 1 for
  "no_hallucination". sentence_spans(text) must give back exactly the sents, else the line is
  skipped (labels are never shifted onto other sentences). prompt (a string or chat messages:
  an optional system message, then one user message; the system text goes to
  `system`) or question -> prompt. chosen / rejected, when given (string or messages),
  must equal the joined sents up to whitespace. Other fields -> meta; meta["format"] =
  "mask_dpo".
- TRL's conversational format (huggingface/trl docs, "Dataset formats"), in pair, SFT and GRPO
  files: prompt as chat messages (an optional system message, then one user message, content a
  string or parts [{"type": "image" | "video" | "text", ...}]); chosen / rejected / completion
  as [{"role": "assistant", "content": ...}]; an SFT line's messages as [system?, user,
  assistant]. Their text parts -> prompt / chosen / rejected / response (completion ->
  response, also in TRL's standard prompt-completion lines); the system text -> `system`.
  The media stay in images / video, placed by the chat template as for any record: image parts
  must match the images listed, a video part needs a video, both in the first user message.
  Earlier turns ([user, assistant, ..., user] before the answer) -> history. Other fields ->
  meta; meta["format"] = "trl".
- LLaMA-Factory's sharegpt and alpaca formats (hiyouga/LLaMA-Factory, data/README.md and
  src/llamafactory/data/converter.py), in pair and SFT files: conversations [{"from": "human",
  "value": ...}] with chosen / rejected {"from": "gpt", "value": ...}, or [human, gpt] for SFT;
  alpaca's instruction (+ "\n" + input) with chosen / rejected or output. A leading system turn
  or `system` -> `system`; images -> images; videos (one) -> video. The "<image>" /
  "<video>" placeholders are removed (the chat template places the media itself) and must
  number as many as the media listed, as LLaMA-Factory requires, in the first user turn.
  Earlier turns (alpaca's `history`, or the turns before the last) -> history. Other fields
  -> meta; meta["format"] = "llamafactory".
"""

from __future__ import annotations

import difflib
import glob
import hashlib
import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from mmalign.io import atomic_write_jsonl, broken_array, json_array_document

Span = tuple[int, int]
Kind = Literal["pair", "sft", "grpo"]


@dataclass
class Record:
    id: str
    source: str  # "path/to/file.jsonl:LINE", for messages
    prompt: str
    video: str | None = None  # absolute path
    images: list[str] | None = None  # absolute paths
    chosen: str | None = None
    rejected: str | None = None
    response: str | None = None  # SFT
    answer: str | None = None  # GRPO
    truth: dict | None = None
    chosen_spans: list[Span] | None = None
    rejected_spans: list[Span] | None = None
    chosen_sentence_labels: list[int] | None = None
    rejected_sentence_labels: list[int] | None = None
    rejected_video: dict | None = None  # {"source": abs path, "ops": [...]} or {"video": abs path}
    difficulty: float | None = None
    history: list[tuple[str, str]] | None = None  # earlier (user, assistant) turns; media go with the first
    system: str | None = None  # the record's own system message (else data.system_prompt)
    meta: dict = field(default_factory=dict)


@dataclass
class Skipped:
    source: str  # file:line
    id: str | None
    reason: str


class RecordError(ValueError):
    """A record file that cannot be read, or (strict mode) its first unusable line."""


class _Invalid(Exception):
    """One line's problem; becomes a Skipped (or a RecordError in strict mode)."""


SCHEMA_FIELDS = tuple(f.name for f in fields(Record) if f.name != "source")
REQUIRED = {"pair": ("prompt", "chosen", "rejected"), "sft": ("prompt", "response"), "grpo": ("prompt",)}
_NON_EMPTY_TEXT = ("chosen", "rejected", "response")


# ---------------------------------------------------------------- sentences and tags


_SENTENCE_END = re.compile(r"""[.!?]+["'”’)\]]*(?=\s|\Z)""")


def sentence_spans(text: str) -> list[Span]:
    """Char spans [start, end) of the sentences of `text`: the one splitter behind sentence
    labels, in records and in the loss weights.

    A sentence ends after a run of . ! ? (plus any closing quotes or brackets) that is followed
    by whitespace or the end of the text; text after the last such end is a sentence too.
    Spans exclude the surrounding whitespace; whitespace-only text has no sentences. It is
    deliberately simple: "Dr. Smith" is split after "Dr.", "3.5" is not split.
    """
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        _add_stripped(spans, text, start, m.end())
        start = m.end()
    _add_stripped(spans, text, start, len(text))
    return spans


def _add_stripped(spans: list[Span], text: str, start: int, end: int) -> None:
    piece = text[start:end]
    lead = len(piece) - len(piece.lstrip())
    trail = len(piece) - len(piece.rstrip())
    if lead < len(piece):
        spans.append((start + lead, end - trail))


MASK_OPEN, MASK_CLOSE = "<MASK>", "</MASK>"
# A tag takes one space of padding on its inner side with it: "a <MASK> red </MASK> car"
# reads "a red car", as the RRPO release writes them.
_MASK_TAG = re.compile(r"<MASK> ?| ?</MASK>")


def mask_tags_to_spans(tagged: str) -> tuple[str, list[Span]]:
    """RRPO's "<MASK> red </MASK>" markup -> (plain text, spans of the tagged phrases).

    Each tag is removed with one space on its inner side, if there is one, so
    "a <MASK> red </MASK> car" -> ("a red car", [(2, 5)]) and "a <MASK>red</MASK> car" gives
    the same. ValueError for nested, unopened or unclosed tags.
    """
    parts, spans, pos, length, opened_at = [], [], 0, 0, None
    for m in _MASK_TAG.finditer(tagged):
        parts.append(tagged[pos : m.start()])
        length += m.start() - pos
        pos = m.end()
        if m.group().strip() == MASK_OPEN:
            if opened_at is not None:
                raise ValueError(f"nested {MASK_OPEN} at char {m.start()}")
            opened_at = length
        else:
            if opened_at is None:
                raise ValueError(f"{MASK_CLOSE} without {MASK_OPEN} at char {m.start()}")
            spans.append((opened_at, length))
            opened_at = None
    if opened_at is not None:
        raise ValueError(f"{MASK_OPEN} never closed")
    parts.append(tagged[pos:])
    return "".join(parts), spans


def spans_to_mask_tags(text: str, spans: list[Span]) -> str:
    """The inverse of mask_tags_to_spans, for export: "<MASK> " + phrase + " </MASK>".
    ValueError for overlapping or out-of-range spans, or text that already holds a tag."""
    if MASK_OPEN in text or MASK_CLOSE in text:
        raise ValueError(f"text already contains {MASK_OPEN} or {MASK_CLOSE}")
    problem = _span_problem([list(s) for s in spans], len(text))
    if problem:
        raise ValueError(problem)
    out, pos = [], 0
    for start, end in sorted(spans):
        out += [text[pos:start], MASK_OPEN, " ", text[start:end], " ", MASK_CLOSE]
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _span_problem(spans: list, text_length: int) -> str | None:
    """Why `spans` are not [start, end] integer pairs inside the text without overlaps, or None."""
    for item in spans:
        if not (isinstance(item, list) and len(item) == 2 and all(_is_int(x) for x in item)):
            return f"items must be [start, end] integer pairs, got {short_repr(item)}"
        start, end = item
        if not 0 <= start <= end <= text_length:
            return f"span [{start}, {end}] is not inside 0..{text_length} with start <= end"
    ordered = sorted(map(tuple, spans))
    for a, b in zip(ordered, ordered[1:]):
        if b[0] < a[1]:
            return f"spans {list(a)} and {list(b)} overlap"
    return None


# ---------------------------------------------------------------- reading


def read_records(path: str | os.PathLike, kind: Kind, strict: bool = False, allow_absolute_paths: bool = False,
                 check_media: bool = True, media_dir: str | os.PathLike | None = None,
                 seen: dict[str, tuple[str, int]] | None = None) -> tuple[list[Record], list[Skipped]]:
    """Read and validate a JSONL record file (see the module docstring for every rule).
    Returns the usable records in file order and a Skipped for every other non-blank line.
    `media_dir`: the folder relative media paths are read under, instead of the file's.
    `seen`: id -> (file, line) of the records read before, in this file or earlier ones; a
    record whose id is there is a duplicate."""
    if kind not in REQUIRED:
        raise ValueError(f"kind must be one of {', '.join(REQUIRED)}, got {kind!r}")
    if media_dir is not None and not Path(media_dir).is_dir():
        raise RecordError(f"data.media_dir: {media_dir}: not a folder")
    # Relative to where the file really is: a link to a dataset's records file (ln -s
    # /data/ds/pairs.jsonl mine.jsonl) names the dataset's media, not files beside the link.
    base = os.path.realpath(media_dir) if media_dir is not None else os.path.dirname(os.path.realpath(path))
    media = _MediaPaths(Path(base), allow_absolute_paths, check_media,
                        name="data.media_dir" if media_dir is not None else "the record file's folder")
    records, skipped, seen = [], [], {} if seen is None else seen
    for lineno, raw in _numbered_lines(path):
        source, obj = f"{path}:{lineno}", None
        try:
            obj = _parse_line(raw)
            record = _to_record(obj, kind, media, source)
            if record.id in seen:
                first, line = seen[record.id]
                raise _Invalid(f"duplicate id {record.id!r} "
                               + (f"(first on line {line})" if first == str(path) else f"(first at {first}:{line})"))
        except _Invalid as e:
            if strict:
                raise RecordError(f"{source}: {e}") from None
            skipped.append(Skipped(source, _peek_id(obj), str(e)))
            continue
        seen[record.id] = (str(path), lineno)
        records.append(record)
    return records, skipped


def record_files(spec: str | os.PathLike) -> list[str]:
    """The files a `data.train_file` names: itself, or, where it holds a glob pattern
    (`annotations/*/*_oe_*.json`, `data/train-*.parquet`), the files it matches, sorted, so
    that a dataset shipped as many files is read as one."""
    spec = str(spec)
    if not glob.has_magic(spec):
        return [spec]
    return sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))


def read_record_files(spec: str | os.PathLike, kind: Kind, **options) -> tuple[list[Record], list[Skipped]]:
    """`read_records` of every file of `record_files(spec)`, in order; a record whose id an
    earlier file already gave is skipped (strict: refused), as within one file."""
    records, skipped, seen = [], [], {}
    for path in record_files(spec):
        got, bad = read_records(path, kind, seen=seen, **options)
        records += got
        skipped += bad
    return records, skipped


def _numbered_lines(path) -> list[tuple[int, bytes]]:
    # Not mmalign.io.iter_jsonl: it stops at the first bad line, and here every line counts.
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise RecordError(f"{path}: cannot read record file ({e.strerror or e})") from None
    if data[:4] == b"PAR1":  # Parquet, as Hugging Face datasets ship
        return _parquet_rows(path)
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark, as some editors write
        data = data[3:]
    if data.lstrip()[:1] == b"[":  # one JSON array (LLaMA-Factory's .json files), each element a line
        try:
            items = json_array_document(data.decode("utf-8"))
        except UnicodeDecodeError:
            items = None  # not one text: read line by line, where each bad line is named
        except json.JSONDecodeError as e:
            raise RecordError(f"{broken_array(path, e)}; no record was read") from None
        if items is not None:
            return [(line, item.encode("utf-8")) for line, item in items]
    return [(i, raw) for i, raw in enumerate(data.split(b"\n"), start=1) if raw.strip()]


def _parquet_rows(path) -> list[tuple[int, bytes]]:
    """Each row of a Parquet file (a dataset downloaded from the Hugging Face hub) as a JSON line,
    numbered from 1. Read with pyarrow, which `datasets` installs; binary cells (an image stored
    in the file) become a placeholder that the media check names."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise RecordError(f"{path}: a Parquet file; reading it needs pyarrow (pip install pyarrow)") from None
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow's errors share no base class with OSError
        raise RecordError(f"{path}: a Parquet file that cannot be read ({type(e).__name__}: {e})") from None
    stored = lambda value: {"stored_bytes": len(value)} if isinstance(value, bytes) else str(value)
    return [(i, json.dumps(row, ensure_ascii=False, default=stored).encode("utf-8")) for i, row in enumerate(rows, 1)]


MAX_LINE_BYTES = 8 * 2**20  # a record line is text and media paths: 8 MiB is far past any real one


def _parse_line(raw: bytes) -> Any:
    if len(raw) > MAX_LINE_BYTES:  # refused before decoding, parsing or tokenizing it
        raise _Invalid(f"line of {len(raw) / 2**20:.1f} MiB is over the {MAX_LINE_BYTES // 2**20} MiB bound of a record")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _Invalid(f"not UTF-8 text (byte {raw[e.start]:#04x} at column {e.start + 1})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise _Invalid(f"not valid JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:
        raise _Invalid("not valid JSON (nested too deeply)") from None
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise _Invalid("a string holds a lone UTF-16 surrogate escape (\\ud800-\\udfff): not text") from None
    return obj


def _peek_id(obj) -> str | None:
    if isinstance(obj, dict):
        value = obj.get("id", obj.get("sample_id"))
        if isinstance(value, str) or _is_int(value):
            return str(value)
    return None


def _to_record(obj, kind: str, media: _MediaPaths, source: str) -> Record:
    if not isinstance(obj, dict):
        raise _Invalid(f"a line must be a JSON object, got {_json_type(obj)}")
    converter = _foreign_format(obj)
    if converter is not None:
        name, convert, kinds = converter
        if kinds is not None and kind not in kinds:
            what = " or ".join({"pair": "preference pairs", "grpo": "GRPO prompts", "sft": "SFT records"}[k]
                               for k in kinds)
            raise _Invalid(f"{name} lines are {what}, but this file is read as {kind}")
        obj = convert(obj, kind)
    _check_field_names(obj)
    missing = [f for f in REQUIRED[kind] if obj.get(f) is None]
    if missing:
        raise _Invalid(f"missing required field '{missing[0]}' (a {kind} record needs {', '.join(REQUIRED[kind])})")
    texts = {name: _optional_text(obj, name) for name in ("prompt", "chosen", "rejected", "response", "answer")}
    history = _history(obj.get("history"))
    if history and kind == "grpo":
        raise _Invalid("'history': a GRPO prompt is one user turn (its rollouts answer it alone)")
    if texts["chosen"] is not None and texts["chosen"] == texts["rejected"]:
        raise _Invalid("chosen and rejected are identical")
    return Record(
        id=_record_id(obj),
        source=source,
        prompt=texts["prompt"],
        video=media.resolve(obj["video"], "video") if obj.get("video") is not None else None,
        images=_images(obj, media),
        chosen=texts["chosen"],
        rejected=texts["rejected"],
        response=texts["response"],
        answer=texts["answer"],
        truth=_optional_object(obj, "truth"),
        chosen_spans=_spans(obj, "chosen_spans", texts["chosen"]),
        rejected_spans=_spans(obj, "rejected_spans", texts["rejected"]),
        chosen_sentence_labels=_labels(obj, "chosen_sentence_labels", texts["chosen"]),
        rejected_sentence_labels=_labels(obj, "rejected_sentence_labels", texts["rejected"]),
        rejected_video=_rejected_video(obj.get("rejected_video"), media),
        difficulty=_difficulty(obj.get("difficulty")),
        history=history,
        system=_optional_text(obj, "system") or None,  # "": the default applies, as in LLaMA-Factory
        meta=_optional_object(obj, "meta") or {},
    )


def _check_field_names(obj: dict, allowed=SCHEMA_FIELDS, where: str = "field") -> None:
    unknown = [k for k in obj if k not in allowed]
    if unknown:
        close = difflib.get_close_matches(unknown[0], allowed, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        extra = "; put extra data under 'meta'" if where == "field" else ""
        raise _Invalid(f"unknown {where} '{unknown[0]}'{hint}{extra}")


def _record_id(obj: dict) -> str:
    value = obj.get("id")
    if value is None:
        canonical = json.dumps(obj, sort_keys=True, ensure_ascii=False)
        return "sha1:" + hashlib.sha1(canonical.encode("utf-8")).hexdigest()[:12]
    if not (isinstance(value, str) or _is_int(value)):
        raise _Invalid(f"'id' must be a string or an integer, got {_json_type(value)}")
    if not str(value).strip():
        raise _Invalid("'id' is empty")
    return str(value)


def _optional_text(obj: dict, name: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Invalid(f"'{name}' must be a string, got {_json_type(value)}")
    if name in _NON_EMPTY_TEXT and not value.strip():
        raise _Invalid(f"'{name}' is empty")
    return value


def _history(value) -> list[tuple[str, str]] | None:
    """Earlier turns as [[user, assistant], ...] (LLaMA-Factory's alpaca `history`), or None."""
    if value is None or value == []:
        return None
    if not (isinstance(value, list) and all(isinstance(t, (list, tuple)) and len(t) == 2
                                            and all(isinstance(x, str) for x in t) for t in value)):
        raise _Invalid(f"'history' must be a list of [user, assistant] text pairs, got {short_repr(value)}")
    if any(not a.strip() for _, a in value):
        raise _Invalid("'history' holds an empty assistant turn")
    return [tuple(t) for t in value]


def _optional_object(obj: dict, name: str) -> dict | None:
    value = obj.get(name)
    if value is not None and not isinstance(value, dict):
        raise _Invalid(f"'{name}' must be an object, got {_json_type(value)}")
    return value


def _images(obj: dict, media: _MediaPaths) -> list[str] | None:
    value = obj.get("images")
    if value is None:
        return None
    if not isinstance(value, list):
        raise _Invalid(f"'images' must be a list of paths, got {_json_type(value)}")
    # TRL writes [] for text-only rows: no images.
    return [media.resolve(p, f"images[{i}]") for i, p in enumerate(value)] or None


def _about_text(obj: dict, name: str, text: str | None):
    """(value, name of its text) of a field that annotates `chosen` / `rejected`; the value
    is None when absent, and the field is refused when its text is missing."""
    value = obj.get(name)
    text_name = name.split("_")[0]
    if value is not None and text is None:
        raise _Invalid(f"'{name}' given without '{text_name}'")
    return value, text_name


def _spans(obj: dict, name: str, text: str | None) -> list[Span] | None:
    value, text_name = _about_text(obj, name, text)
    if value is None:
        return None
    if not isinstance(value, list):
        raise _Invalid(f"'{name}' must be a list of [start, end] pairs, got {_json_type(value)}")
    problem = _span_problem(value, len(text))
    if problem:
        raise _Invalid(f"'{name}': {problem} ('{text_name}' has {len(text)} chars)")
    return [(int(s), int(e)) for s, e in value]


def _labels(obj: dict, name: str, text: str | None) -> list[int] | None:
    value, text_name = _about_text(obj, name, text)
    if value is None:
        return None
    if not isinstance(value, list) or not all(_is_int(v) and v in (0, 1) for v in value):
        raise _Invalid(f"'{name}' must be a list of 0 or 1 (1 = factual), got {short_repr(value)}")
    n_sentences = len(sentence_spans(text))
    if len(value) != n_sentences:
        raise _Invalid(f"'{name}' has {len(value)} labels but '{text_name}' has {n_sentences} sentences "
                       "(split after . ! ? followed by whitespace)")
    return [int(v) for v in value]


def _rejected_video(value, media: _MediaPaths) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _Invalid(f"'rejected_video' must be an object, got {_json_type(value)}")
    if "video" in value:
        _check_field_names(value, ("video",), "'rejected_video' key")
        return {"video": media.resolve(value["video"], "rejected_video.video")}
    _check_field_names(value, ("source", "ops"), "'rejected_video' key")
    if "source" not in value or "ops" not in value:
        raise _Invalid("'rejected_video' needs {'video': path} or {'source': path, 'ops': [...]}")
    ops = value["ops"]
    if not isinstance(ops, list) or not all(isinstance(op, dict) and isinstance(op.get("op"), str) for op in ops):
        raise _Invalid(f"'rejected_video.ops' must be a list of {{'op': name, ...}} objects, got {short_repr(ops)}")
    # Op names and parameters are checked when the ops run (video_ops.apply_ops): perturb/
    # may register ops that are not imported here.
    return {"source": media.resolve(value["source"], "rejected_video.source"), "ops": ops}


def _difficulty(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _Invalid(f"'difficulty' must be a finite number, got {short_repr(value)}")
    return float(value)


@dataclass
class _MediaPaths:
    folder: Path  # absolute folder of the record file, or data.media_dir
    allow_absolute: bool
    check_exists: bool
    name: str = "the record file's folder"

    def resolve(self, value, name: str) -> str:
        if isinstance(value, dict) and set(value) == {"bytes", "path"}:  # a Hugging Face Image / Video cell
            if value["bytes"] is not None:
                raise _Invalid(f"'{name}' is stored in the file (a Hugging Face Image with its bytes), not a path: "
                               "save the media to files and list their paths")
            value = value["path"]
        if not isinstance(value, str) or not value.strip():
            raise _Invalid(f"'{name}' must be a non-empty path string, got {short_repr(value)}")
        if "\x00" in value:  # no file system takes one, and realpath raises on it
            raise _Invalid(f"'{name}' path {short_repr(value)} holds a NUL character")
        if os.path.isabs(value):
            if not self.allow_absolute:
                raise _Invalid(f"'{name}' path {value!r} is absolute; paths are relative to {self.name} "
                               "(allow_absolute_paths permits others)")
            full = os.path.normpath(value)
        else:
            full = os.path.normpath(os.path.join(self.folder, value))
            if not self.allow_absolute and not _is_inside(full, self.folder):
                raise _Invalid(f"'{name}' path {value!r} leaves {self.name} "
                               "(allow_absolute_paths permits it)")
            # Checked by its real location too: a symlink (or a symlinked folder) must not lead out.
            if not self.allow_absolute and not _is_inside(os.path.realpath(full), os.path.realpath(self.folder)):
                raise _Invalid(f"'{name}' path {value!r} is a symbolic link (or in a linked folder) that leads out of "
                               f"{self.name} (allow_absolute_paths permits it)")
        if self.check_exists and not os.path.isfile(full):
            raise _Invalid(f"'{name}' file not found: {full}")
        return full


def _is_inside(path: str, folder: Path) -> bool:
    try:
        return os.path.commonpath([path, str(folder)]) == str(folder)
    except ValueError:
        return False


# ---------------------------------------------------------------- foreign formats


def _foreign_format(obj: dict):
    """(format name, converter(obj, kind), the record kinds its lines can be or None for any), or None."""
    if "answer_masked" in obj or "pred_masked" in obj:
        return "RRPO release", _from_rrpo, ("pair",)
    if "chosen_item" in obj or "rejected_item" in obj:
        return "Mask-DPO", _from_mask_dpo, ("pair",)
    if "problem" in obj and "problem_type" in obj:
        return "Video-R1", _from_video_r1, ("grpo", "sft")
    if "conversations" in obj or "instruction" in obj or _llamafactory_messages(obj):
        return "LLaMA-Factory", _from_llamafactory, None
    if "messages" in obj or "completion" in obj or any(isinstance(obj.get(k), list) for k in ("prompt", "chosen", "rejected")):
        return "TRL", _from_trl, None
    return None


# Our fields a foreign line may carry as they are; everything else it has goes to meta.
_PASSTHROUGH = ("id", "video", "images", "difficulty", "rejected_video", "truth", "chosen_sentence_labels",
                "rejected_sentence_labels", "system", "history")
_PLACEHOLDER = re.compile(r"<(?:image|video)>\n?")


def _from_rrpo(obj: dict, kind: str) -> dict:
    chosen, chosen_spans = _untag(obj, "answer_masked", "answer")
    rejected, rejected_spans = _untag(obj, "pred_masked", "pred")
    question = obj.get("question")
    if not isinstance(question, str):
        raise _Invalid(f"RRPO line: 'question' must be a string, got {_json_type(question)}")
    consumed = {"question", "answer", "pred", "answer_masked", "pred_masked", "media_path", "sample_id", "meta"}
    out = _carry_over(obj, consumed, "rrpo")
    out.update(prompt=_PLACEHOLDER.sub("", question).strip(), chosen=chosen, rejected=rejected,
               chosen_spans=[list(s) for s in chosen_spans], rejected_spans=[list(s) for s in rejected_spans])
    if "video" not in out and obj.get("media_path") is not None:
        out["video"] = obj["media_path"]
    if "id" not in out and obj.get("sample_id") is not None:
        out["id"] = obj["sample_id"]
    return out


# Video-R1's GRPO prompt (tulerfeng/Video-R1 @ 59d65c3, src/r1-v/src/open_r1/grpo.py,
# make_conversation_image_and_video): its question template, then one instruction per problem type.
VIDEO_R1_QUESTION = (
    "{Question}\n"
    "Please think about this question as if you were a human pondering deeply. "
    "Engage in an internal dialogue using expressions such as 'let me think', 'wait', 'Hmm', 'oh, I see', "
    "'let's break it down', etc, or other natural language thought expressions "
    "It's encouraged to include self-reflection or verification in the reasoning process. "
    "Provide your detailed reasoning between the <think> </think> tags, and then give your final answer between "
    "the <answer> </answer> tags.")
VIDEO_R1_TYPES = {
    "multiple choice": " Please provide only the single option letter (e.g., A, B, C, D, etc.) within the "
                       "<answer> </answer> tags.",
    "numerical": " Please provide the numerical value (e.g., 42 or 3.14) within the <answer> </answer> tags.",
    "OCR": " Please transcribe text from the image/video clearly and provide your text answer within the "
           "<answer> </answer> tags.",
    "free-form": " Please provide your text answer within the <answer> </answer> tags.",
    "regression": " Please provide the numerical value (e.g., 42 or 3.14) within the <answer> </answer> tags.",
}
VIDEO_R1_ANSWER = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.DOTALL)  # its extract_answer: the first tag


def _from_video_r1(obj: dict, kind: str) -> dict:
    """A Video-R1-260k line (problem, problem_type, options, solution, data_type, path) as the
    GRPO prompt its training code builds, the answer inside its solution's <answer> tags, and
    truth {"kind": problem_type, "choices": options} for the `video_r1_accuracy` reward. Read
    as SFT (Video-R1-COT-165k, src/r1-v/src/open_r1/sft_video.py), the response is its
    `process` (the reasoning), a newline and its solution, under its system message."""
    problem, ptype, solution = obj.get("problem"), obj.get("problem_type"), obj.get("solution")
    if not isinstance(problem, str) or not isinstance(solution, str):
        raise _Invalid("Video-R1 line: 'problem' and 'solution' must be strings")
    if ptype not in VIDEO_R1_TYPES:
        raise _Invalid(f"Video-R1 line: 'problem_type' {ptype!r} is not one of {list(VIDEO_R1_TYPES)}")
    options = obj.get("options") or []
    if not (isinstance(options, list) and all(isinstance(o, str) for o in options)) or (
            ptype == "multiple choice" and not options):
        raise _Invalid(f"Video-R1 line: 'options' must be a list of strings (a multiple-choice line has some), got "
                       f"{short_repr(obj.get('options'))}")
    gold = VIDEO_R1_ANSWER.search(solution)
    if gold is None:
        raise _Invalid(f"Video-R1 line: 'solution' holds no <answer>...</answer>: {short_repr(solution)}")
    media, path = obj.get("data_type"), obj.get("path")
    if media not in ("video", "image") or not isinstance(path, str):
        raise _Invalid(f"Video-R1 line: 'data_type' must be video or image, with its 'path', got {short_repr(media)}")
    question = problem + "Options:\n" + "".join(o + "\n" for o in options) if ptype == "multiple choice" else problem
    consumed = {"problem", "problem_type", "options", "solution", "data_type", "path", "meta"}
    if kind == "sft":
        if not isinstance(obj.get("process"), str):
            raise _Invalid("Video-R1 line read as SFT: 'process' (its reasoning, Video-R1-COT) must be a string")
        consumed.add("process")
    out = _carry_over(obj, consumed, "video_r1")
    out.update(prompt=VIDEO_R1_QUESTION.format(Question=question) + VIDEO_R1_TYPES[ptype], answer=gold.group(1).strip(),
               truth={"kind": ptype, **({"choices": options} if options else {})})
    if kind == "sft":
        out.update(response=obj["process"] + "\n" + solution, system="You are a helpful assistant")
    if media == "video":
        out["video"] = path
    else:
        out["images"] = [path]
    if "id" not in out and obj.get("problem_id") is not None:
        out["id"] = obj["problem_id"]
        out["meta"].pop("problem_id", None)
    return out


def _untag(obj: dict, masked_name: str, plain_name: str) -> tuple[str, list[Span]]:
    masked = obj.get(masked_name)
    if not isinstance(masked, str):
        raise _Invalid(f"RRPO line: '{masked_name}' must be a string, got {_json_type(masked)}")
    try:
        text, spans = mask_tags_to_spans(masked)
    except ValueError as e:
        raise _Invalid(f"RRPO line: '{masked_name}': {e}") from None
    plain = obj.get(plain_name)
    if plain is not None and plain != text:
        raise _Invalid(f"RRPO line: '{masked_name}' without its tags is not '{plain_name}': "
                       f"{short_repr(text)} vs {short_repr(plain)}")
    return text, spans


def _from_mask_dpo(obj: dict, kind: str) -> dict:
    prompt, system, history = _mask_dpo_prompt(obj)
    chosen, chosen_labels = _from_sentences(obj, "chosen_item", "chosen")
    rejected, rejected_labels = _from_sentences(obj, "rejected_item", "rejected")
    consumed = {"prompt", "question", "chosen", "rejected", "chosen_item", "rejected_item", "meta"}
    out = _carry_over(obj, consumed, "mask_dpo")
    if system is not None:
        out["system"] = system
    if history:
        out["history"] = history
    out.update(prompt=prompt, chosen=chosen, rejected=rejected,
               chosen_sentence_labels=chosen_labels, rejected_sentence_labels=rejected_labels)
    return out


def _carry_over(obj: dict, consumed: set, fmt: str) -> dict:
    meta = obj.get("meta") if obj.get("meta") is not None else {}
    if not isinstance(meta, dict):
        raise _Invalid(f"'meta' must be an object, got {_json_type(meta)}")
    out = {k: v for k, v in obj.items() if k in _PASSTHROUGH}
    extra = {k: v for k, v in obj.items() if k not in _PASSTHROUGH and k not in consumed}
    out["meta"] = {**extra, **meta, "format": fmt}
    return out


_HALLUCINATION_TYPES = {"no_hallucination": 1, "hallucination": 0}


def _from_sentences(obj: dict, item_name: str, text_name: str) -> tuple[str, list[int]]:
    item = obj.get(item_name)
    if not isinstance(item, dict):
        raise _Invalid(f"Mask-DPO line: '{item_name}' must be an object with 'sents' and 'type', got {_json_type(item)}")
    sents, types = item.get("sents"), item.get("type")
    if not isinstance(sents, list) or not all(isinstance(s, str) for s in sents):
        raise _Invalid(f"Mask-DPO line: '{item_name}.sents' must be a list of strings")
    if not isinstance(types, list) or not all(isinstance(t, str) and t in _HALLUCINATION_TYPES for t in types):
        raise _Invalid(f"Mask-DPO line: '{item_name}.type' must be a list of 'hallucination' / 'no_hallucination'")
    if len(sents) != len(types):
        raise _Invalid(f"Mask-DPO line: '{item_name}' has {len(sents)} sents but {len(types)} types")
    sents = [s.strip() for s in sents]
    text = " ".join(sents)
    found = [text[a:b] for a, b in sentence_spans(text)]
    if found != sents:
        raise _Invalid(f"Mask-DPO line: '{item_name}': {_sentence_mismatch(found, sents)}; "
                       "labels would not line up with sentence_spans")
    if obj.get(text_name) is not None:
        given = _message_text(obj[text_name], f"Mask-DPO line: '{text_name}'", role="assistant")
        if given.split() != text.split():
            raise _Invalid(f"Mask-DPO line: '{text_name}' differs from the joined '{item_name}.sents'")
    return text, [_HALLUCINATION_TYPES[t] for t in types]


def _sentence_mismatch(found: list[str], sents: list[str]) -> str:
    if len(found) != len(sents):
        return f"the joined text splits into {len(found)} sentences, 'sents' has {len(sents)}"
    i = next(i for i, (a, b) in enumerate(zip(found, sents)) if a != b)
    return f"sentence {i} splits as {short_repr(found[i])}, 'sents' has {short_repr(sents[i])}"


def _mask_dpo_prompt(obj: dict) -> tuple[str, str | None, list]:
    """(user prompt, system text or None, earlier turns) from 'prompt' (string or chat messages)
    or 'question'."""
    value = obj.get("prompt", obj.get("question"))
    if isinstance(value, str):
        return value, None, []
    prompt, system, _, history = _chat_prompt(value, "Mask-DPO line: 'prompt'")
    return prompt, system, history


def _from_trl(obj: dict, kind: str) -> dict:
    consumed = {"prompt", "chosen", "rejected", "completion", "messages", "answer", "image", "meta"}
    out = _carry_over(obj, consumed, "trl")
    if obj.get("answer") is not None:  # a GRPO line's reference answer, ours by name
        out["answer"] = obj["answer"]
    messages = obj.get("messages")
    if messages is not None:
        if not isinstance(messages, list) or len(messages) < 2 or not isinstance(messages[-1], dict):
            raise _Invalid(f"TRL line: 'messages' must be [system?, user, assistant] chat messages, got "
                           f"{short_repr(messages)}")
        turns = {"prompt": messages[:-1], "completion": messages[-1:]}
    else:
        turns = {k: obj[k] for k in ("prompt", "chosen", "rejected", "completion") if obj.get(k) is not None}
        chosen, rejected = turns.get("chosen"), turns.get("rejected")
        if (isinstance(chosen, list) and isinstance(rejected, list) and len(chosen) > 1
                and not isinstance(turns.get("prompt"), list)):
            # TRL's implicit prompt (trl-lib/ultrafeedback_binarized): the messages both answers
            # start with are the prompt, as trl.extract_prompt takes them (a string `prompt`
            # beside them is a copy it ignores too)
            shared = next((i for i, (c, r) in enumerate(zip(chosen, rejected)) if c != r), min(len(chosen), len(rejected)))
            turns.update(prompt=chosen[:shared], chosen=chosen[shared:], rejected=rejected[shared:])
    media: dict = {}
    if isinstance(turns.get("prompt"), list):
        out["prompt"], system, media, history = _chat_prompt(turns["prompt"],
                                                             f"TRL line: '{'messages' if messages else 'prompt'}'")
        if system is not None:
            out["system"] = system
        if history:
            out["history"] = history
    elif "prompt" in turns:
        out["prompt"] = turns["prompt"]
    for name, ours in (("chosen", "chosen"), ("rejected", "rejected"), ("completion", "response")):
        if name in turns:
            where = "messages" if messages else name
            out[ours] = _message_text(turns[name], f"TRL line: '{where}'", "assistant") \
                if isinstance(turns[name], list) else turns[name]
    images = _single_image(obj, out)
    if media.get("image") and media["image"] != len(images):
        raise _Invalid(f"TRL line: the prompt has {media['image']} image part(s) but 'images' lists {len(images)}")
    if media.get("video") and (media["video"] > 1 or obj.get("video") is None):
        raise _Invalid(f"TRL line: the prompt has {media['video']} video part(s); a record holds one 'video' path")
    return out


# LLaMA-Factory's sharegpt format under its two tag sets (its data/README.md): {from, value} turns
# of human / gpt / system, or {role, content} messages of user / assistant / system, the OpenAI
# tags its own multimodal demos use (data/mllm_demo.json, mllm_video_demo.json).
_LLAMAFACTORY_TAGS = {"conversations": ("from", "value", "human", "gpt"),
                      "messages": ("role", "content", "user", "assistant")}


def _llamafactory_messages(obj: dict) -> bool:
    """A `messages` line in LLaMA-Factory's OpenAI tags rather than TRL's format: string contents
    (TRL writes media as content parts) and `videos`, <image> / <video> placeholders, or a
    preference answer as one message (TRL's are lists). Read as TRL's, its video was dropped
    into meta and the model trained on the text alone."""
    messages = obj.get("messages")
    if not (isinstance(messages, list) and all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                               for m in messages)):
        return False
    texts = [m["content"] for m in messages]
    return ("videos" in obj or any(_PLACEHOLDER.search(t) for t in texts)
            or any(isinstance(obj.get(k), dict) for k in ("chosen", "rejected")))


def _from_llamafactory(obj: dict, kind: str) -> dict:
    consumed = {"conversations", "messages", "instruction", "input", "output", "chosen", "rejected", "system",
                "videos", "image", "history", "meta"}
    out = _carry_over(obj, consumed, "llamafactory")
    system = obj.get("system")
    key = next((k for k in _LLAMAFACTORY_TAGS if k in obj), None)
    pair = "chosen" in obj or "rejected" in obj
    if key is not None:
        role, text, user, assistant = _LLAMAFACTORY_TAGS[key]
        turns = obj[key]
        if not isinstance(turns, list) or not all(isinstance(t, dict) and isinstance(t.get(text), str) for t in turns):
            raise _Invalid(f"LLaMA-Factory line: '{key}' must be a list of {{{role}, {text}}} turns")
        if turns and turns[0].get(role) == "system":
            system, turns = turns[0][text], turns[1:]
        # Earlier turns are context (a pair's answers are to the last); an SFT line trains on
        # every assistant turn, as LLaMA-Factory does by default.
        n = (len(turns) + 1) // 2 if pair else max(1, len(turns) // 2)
        expected = [user, assistant] * (n - 1) + ([user] if pair else [user, assistant])
        if [t.get(role) for t in turns] != expected:
            shape = f"[{user}, ({assistant}, {user})*]" if pair else f"[{user}, {assistant}, ({user}, {assistant})*]"
            raise _Invalid(f"LLaMA-Factory line: '{key}' must be {shape}"
                           + (" (the answers in chosen / rejected)" if pair else "")
                           + f", got {[t.get(role) for t in turns]}")
        users = [t[text] for t in turns[0::2]]
        answers = [t[text] for t in turns[1::2]]
        replies = {"chosen": obj.get("chosen"), "rejected": obj.get("rejected")} if pair else {"response": turns[-1]}
        for name, reply in replies.items():
            if not (isinstance(reply, dict) and reply.get(role) == assistant and isinstance(reply.get(text), str)):
                raise _Invalid(f"LLaMA-Factory line: '{name}' must be {{'{role}': '{assistant}', '{text}': text}}, "
                               f"got {short_repr(reply)}")
            out[name] = reply[text]
    else:
        history = _history(obj.get("history")) or []
        users = [q for q, _ in history] + ["\n".join(x for x in (obj.get("instruction"), obj.get("input"))
                                                    if isinstance(x, str) and x)]
        answers = [a for _, a in history]
        out.update({ours: obj[theirs] for theirs, ours in (("chosen", "chosen"), ("rejected", "rejected"),
                                                           ("output", "response")) if theirs in obj})
    later = [i for i, u in enumerate(users) if i > 0 and _PLACEHOLDER.search(u)]
    if later:
        raise _Invalid(f"LLaMA-Factory line: a media placeholder in user turn {later[0] + 1}; a record's media go "
                       "with its first user turn")
    prompt = users[0]  # the turn that holds the media placeholders
    if system:
        out["system"] = system
    videos = obj.get("videos") or []
    if not isinstance(videos, list) or len(videos) + isinstance(obj.get("video"), str) > 1:
        raise _Invalid(f"LLaMA-Factory line: 'videos' must list at most one video (a record holds one), got "
                       f"{short_repr(videos)}" + (f" beside 'video' {obj['video']!r}" if obj.get("video") else ""))
    if videos:
        out["video"] = videos[0]
    images = _single_image(obj, out)
    # LLaVA-NeXT's video data (LLaVA-Video-178K: `video`, and <image> in the first turn) marks the
    # video's place with <image>; its loader puts the frames there.
    video_as_image = "video" in out and not images and prompt.count("<image>") == 1 and "<video>" not in prompt
    for tag, listed in (("<image>", 1 if video_as_image else len(images)), ("<video>", int("video" in out))):
        if tag in prompt and prompt.count(tag) != listed:
            raise _Invalid(f"LLaMA-Factory line: the prompt has {prompt.count(tag)} {tag} placeholder(s) for "
                           f"{listed} listed")
    users[0] = _PLACEHOLDER.sub("", prompt).strip()
    # The prompt is the last user turn; before it, the (user, answer) turns (an SFT conversation's
    # last answer, its response, pairs with no user turn after it).
    out["prompt"], history = users[-1], list(zip(users[:-1], answers))
    if history:
        out["history"] = history
    return out


def _single_image(obj: dict, out: dict) -> list:
    """The record's image list, with a one-path `image` column read as [image] (LLaVA's data
    files and TRL's older vision datasets name their one image so; it went to meta)."""
    if "image" in obj:
        if not isinstance(obj["image"], str) or "images" in obj:
            raise _Invalid(f"'image' must be one path, without 'images', got {short_repr(obj['image'])}")
        out["images"] = [obj["image"]]
    return out.get("images") if isinstance(out.get("images"), list) else []


def _chat_prompt(value, where: str) -> tuple[str, str | None, dict, list[tuple[str, str]]]:
    """(last user text, system text or None, media parts counted, earlier (user, assistant) turns)
    of [system?, user, (assistant, user)*] chat messages; media parts only in the first user
    message (the record's media go with its first turn)."""
    if not isinstance(value, list) or not value or not all(isinstance(m, dict) for m in value):
        raise _Invalid(f"{where} must be a string or a list of chat messages, got {_json_type(value)}")
    roles = [m.get("role") for m in value]
    system = _message_text(value[:1], where, "system") if roles[0] == "system" else None
    turns = value[1:] if system is not None else value
    if [m.get("role") for m in turns] != ["user", "assistant"] * (len(turns) // 2) + ["user"]:
        raise _Invalid(f"{where}: prompt messages must be [system?, user, (assistant, user)*], got roles {roles}")
    texts, media = [], {}
    for i, message in enumerate(turns):
        text, parts = _content_text(message.get("content"), where)
        if parts and i > 0:
            raise _Invalid(f"{where}: media parts in turn {i + 1}; a record's media go with its first user turn")
        texts.append(text)
        media = media or parts
    history = [(texts[i], texts[i + 1]) for i in range(0, len(texts) - 1, 2)]
    return texts[-1], system, media, history


def _message_text(value, where: str, role: str) -> str:
    """The text of a string, or of a one-message chat list [{"role": role, "content": ...}] whose
    content is a string or text parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict) and value[0].get("role") == role:
        text, media = _content_text(value[0].get("content"), where)
        if not media:
            return text
    raise _Invalid(f"{where} must be a string or [{{'role': '{role}', 'content': text}}]")


def _content_text(content, where: str) -> tuple[str, dict]:
    """A message content's text (a string, or its text parts joined as chat templates join them)
    and its media parts counted by type."""
    if isinstance(content, str):
        return content, {}
    parts = content if isinstance(content, list) else [None]
    texts, media = [], {}
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind in ("image", "video"):
            media[kind] = media.get(kind, 0) + 1
        else:
            raise _Invalid(f"{where}: a message content must be a string or parts of type text / image / video, "
                           f"got {short_repr(part)}")
    return "".join(texts), media


# ---------------------------------------------------------------- reporting skips

def reason_counts(skipped) -> list[tuple[str, int]]:
    """Skip reasons grouped (file paths inside them blanked), commonest first."""
    def blanked(reason: str) -> str:
        return re.sub(r": /\S+$", ": …", re.sub(r"'(?:/|\.\.)[^']*'", "'…'", reason))

    return Counter(blanked(s.reason if hasattr(s, "reason") else s["reason"]) for s in skipped).most_common()


FIXES = (("allow_absolute_paths permits", "data.allow_absolute_paths=true"),
         ("file not found", "media paths are relative to the record file's folder, or to data.media_dir"),
         ("does not read", "mmalign train --help lists each method's keys"))


def no_usable_records(path: str, skipped, fixes: tuple = FIXES) -> RecordError:
    """'no usable records', with the top reasons, their counts, and what fixes them (`fixes`:
    (text in the reason, fix) pairs, first match wins)."""
    top = reason_counts(skipped)[:3]
    lines = [f"{path}: no usable records ({len(skipped)} skipped)" + (": top reasons:" if top else "")]
    for reason, n in top:
        fix = next((f for key, f in fixes if key in reason), None)
        lines.append(f"  {n} x {reason}" + (f"  [fix: {fix}]" if fix else ""))
    return RecordError("\n".join(lines))


# ---------------------------------------------------------------- writing


def write_records(path: str | os.PathLike, records: list[Record]) -> None:
    """Write records in this schema (atomically), media paths relative to the output file's
    folder where they lie inside it and absolute otherwise (read those back with
    allow_absolute_paths). `source` is not written; reading the file back gives equal records."""
    folder = Path(path).absolute().parent
    atomic_write_jsonl(path, [record_to_dict(r, folder) for r in records])


def record_to_dict(record: Record, folder: str | os.PathLike) -> dict:
    """The JSON object for `record`, media paths made relative to `folder` where inside it."""
    folder = Path(folder).absolute()
    out = {}
    for name in SCHEMA_FIELDS:
        value = getattr(record, name)
        if value is None or (name == "meta" and not value):
            continue
        out[name] = value
    if record.video is not None:
        out["video"] = _relative(record.video, folder)
    if record.images is not None:
        out["images"] = [_relative(p, folder) for p in record.images]
    if record.rejected_video is not None:
        out["rejected_video"] = {k: _relative(v, folder) if k in ("source", "video") else v
                                 for k, v in record.rejected_video.items()}
    for name in ("chosen_spans", "rejected_spans"):
        if out.get(name) is not None:
            out[name] = [list(s) for s in out[name]]
    return out


def _relative(path: str, folder: Path) -> str:
    # The reader resolves relative paths from the file's real folder: a path read through it
    # (a folder reached by a link) is inside that one.
    for base in (folder, Path(os.path.realpath(folder))):
        if _is_inside(path, base):
            return os.path.relpath(path, base)
    return path


# ---------------------------------------------------------------- small helpers


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_type(value) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def short_repr(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
