"""Reading files a stranger sent: the one way every joulebench tool opens submission files.

A reviewer runs `validate`, `package`, `score`, `report`, `compare` and `recost` on folders
somebody else made. Nothing in such a folder may make a tool read outside it, follow a link,
hang, or exhaust memory. So every file is opened here, and only here:

- each path component is opened with O_NOFOLLOW from the root down (openat on directory file
  descriptors), so a symbolic link anywhere below the root, to a file or a folder, is refused
  rather than followed, and a path with `..` never leaves the root;
- the file is opened non-blocking and checked with fstat on the open descriptor before a byte
  is read: only a regular file with a single link (a hard link would expose a file from
  elsewhere) no larger than the caller's limit is read; a FIFO, socket or device is refused
  without waiting on it;
- reads stop at the limit, whatever the file grows to while it is read;
- text must be UTF-8; JSON must be UTF-8, nested at most MAX_JSON_DEPTH deep, and hold only
  finite numbers (no NaN, Infinity or 1e400) and integers of at most MAX_INT_DIGITS digits.

Every refusal is an UnsafeFile (a ValueError) whose message is a sentence for the submitter.
Values from files that become path components go through safe_component first.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

MAX_JSON_DEPTH = 64  # joulebench's own files nest about 6 deep
MAX_INT_DIGITS = 30  # nanosecond timestamps have 19; anything longer is not a measurement
SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_KINDS = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class UnsafeFile(ValueError):
    """A file a tool refuses to read (or a name it refuses to use), with the reason."""


def kind_of(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def safe_component(value: Any, what: str) -> str:
    """`value` as one path component, or UnsafeFile: letters, digits, '.', '_', '-' only, and
    never '.' or '..' (a benchmark name, a framework, a system id)."""
    if not isinstance(value, str) or not SAFE_NAME.fullmatch(value) or value in (".", ".."):
        raise UnsafeFile(
            f"{what} {str(value)[:80]!r} is not a safe name (letters, digits, '.', '_', '-')"
        )
    return value


def _parts(path: Path, root: Path | None) -> tuple[Path, list[str]]:
    """The root to start from and the components below it, checked lexically."""
    if root is None:
        root, parts = path.parent, [path.name]
    else:
        try:
            parts = list(Path(os.path.normpath(path)).relative_to(os.path.normpath(root)).parts)
        except ValueError as exc:
            raise UnsafeFile(f"{path} is outside {root}") from exc
    if not parts or any(p in ("", ".", "..") for p in parts):
        raise UnsafeFile(f"{path} does not name a file below {root}")
    return root, parts


def _open_fd(path: Path, limit: int, root: Path | None) -> tuple[int, int]:
    """(descriptor, size) of the regular file at `path`, opened without following any link
    below `root` (default: its own folder); UnsafeFile otherwise."""
    root, parts = _parts(Path(path), None if root is None else Path(root))
    try:
        dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise UnsafeFile(f"cannot open the folder {root}: {exc.strerror}") from exc
    try:
        for i, part in enumerate(parts[:-1]):
            try:
                fd = os.open(part, _DIR_FLAGS, dir_fd=dir_fd)
            except OSError as exc:
                raise UnsafeFile(
                    _refusal(os.path.join(*parts[: i + 1]), exc, dir_fd, part)
                ) from exc
            os.close(dir_fd)
            dir_fd = fd
        try:
            fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            raise UnsafeFile(_refusal(os.path.join(*parts), exc, dir_fd, parts[-1])) from exc
    finally:
        os.close(dir_fd)
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = f"is {kind_of(info.st_mode)}, not a regular file"
    elif info.st_nlink > 1:
        problem = f"has {info.st_nlink} hard links (a submission holds its own copies)"
    elif info.st_size > limit:
        problem = f"is {info.st_size} bytes, over the {limit}-byte limit"
    if problem:
        os.close(fd)
        raise UnsafeFile(f"{os.path.join(*parts)} {problem}")
    return fd, info.st_size


def _refusal(rel: str, exc: OSError, dir_fd: int, name: str) -> str:
    with contextlib.suppress(OSError):
        mode = os.lstat(name, dir_fd=dir_fd).st_mode
        if stat.S_ISLNK(mode):
            return f"{rel} is a symbolic link; submissions hold regular files, never links"
        if not stat.S_ISDIR(mode) and exc.errno == errno.ENOTDIR:
            return f"{rel} is not a folder"
    return f"cannot open {rel}: {exc.strerror}"


def open_binary(path: Path, limit: int, root: Path | None = None) -> IO[bytes]:
    """A binary stream of the regular file at `path` (see the module docstring); the caller
    reads at most `limit` bytes from it, which the file's size was checked against."""
    fd, _ = _open_fd(path, limit, root)
    os.set_blocking(fd, True)  # a regular file: blocking reads are safe now
    return os.fdopen(fd, "rb")


def read_bytes(path: Path, limit: int, root: Path | None = None) -> bytes:
    with open_binary(path, limit, root) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UnsafeFile(f"{Path(path).name} grew past the {limit}-byte limit while it was read")
    return data


def read_text(path: Path, limit: int, root: Path | None = None) -> str:
    data = read_bytes(path, limit, root)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnsafeFile(f"{Path(path).name} is not UTF-8 text (byte {exc.start})") from exc


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise UnsafeFile(f"number {text[:40]} is out of range (JSON numbers must be finite)")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise UnsafeFile(f"integer of {len(text)} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _reject_constant(name: str):
    raise UnsafeFile(f"non-finite number {name} (JSON has no NaN or Infinity)")


def _depth(value: Any) -> int:
    """How deep containers nest in `value`, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            if depth <= MAX_JSON_DEPTH:
                stack.extend((x, depth + 1) for x in item)
    return deepest


def parse_json(text: str, name: str = "JSON") -> Any:
    """JSON text that may be hostile: finite numbers only, bounded integers and nesting."""
    try:
        value = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except RecursionError as exc:
        raise UnsafeFile(f"{name} is nested too deeply") from exc
    except json.JSONDecodeError as exc:
        raise UnsafeFile(f"{name} is not JSON ({exc.msg} at line {exc.lineno})") from exc
    except UnsafeFile as exc:
        raise UnsafeFile(f"{name}: {exc}") from exc
    if _depth(value) > MAX_JSON_DEPTH:
        raise UnsafeFile(f"{name} is nested more than {MAX_JSON_DEPTH} deep")
    return value


def read_json(path: Path, limit: int, root: Path | None = None) -> Any:
    return parse_json(read_text(path, limit, root), Path(path).name)


def sha256(path: Path, limit: int, root: Path | None = None) -> str:
    digest = hashlib.sha256()
    with open_binary(path, limit, root) as f:
        read = 0
        while chunk := f.read(1 << 20):
            read += len(chunk)
            if read > limit:
                raise UnsafeFile(f"{Path(path).name} grew past the {limit}-byte limit")
            digest.update(chunk)
    return digest.hexdigest()


def tree_problems(root: Path) -> Iterator[tuple[str, str]]:
    """(path relative to root, problem) for everything in the tree that no tool will read: a
    symbolic link (to a file or a folder: never followed), a FIFO, socket or device, a regular
    file with more than one hard link. The walk itself never follows a link."""
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        for name in [*dirnames, *filenames]:
            full = here / name
            try:
                info = full.lstat()
            except OSError as exc:
                yield str(full.relative_to(root)), f"cannot be inspected ({exc.strerror})"
                continue
            if stat.S_ISDIR(info.st_mode):
                continue
            if not stat.S_ISREG(info.st_mode):
                yield str(full.relative_to(root)), f"is {kind_of(info.st_mode)}"
            elif info.st_nlink > 1:
                yield str(full.relative_to(root)), f"has {info.st_nlink} hard links"


def find_files(top: Path, name: str) -> list[Path]:
    """Every regular, singly linked file called `name` under `top` (or `top` itself when it is
    one), walked without following links; links and special files are skipped, never opened."""
    top = Path(top)
    try:
        info = top.lstat()
    except OSError:
        return []
    if stat.S_ISREG(info.st_mode):
        return [top]
    if not stat.S_ISDIR(info.st_mode):
        return []
    found = []
    for dirpath, _, filenames in os.walk(top, followlinks=False):
        if name in filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            if stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
                found.append(path)
    return sorted(found)
