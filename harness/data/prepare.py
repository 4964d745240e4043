"""Text files -> a nanoGPT-layout token file (.bin: flat uint16 ids) and its manifest.

Byte-level tokens (vocab 256): no tokenizer to download or train, every byte sequence
round-trips, and a run is reproducible from the files alone. Each source file's bytes are
appended in path order, joined by one newline. The manifest (<out>.json, beside the .bin)
records every source's path, sha256, bytes and tokens, the .bin's own sha256, the tokenizer
and the dtype, so a result's `benchmark.data.path` can be traced back to its text.

Both files are written atomically: a crash leaves the old ones or none, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from harness import __version__
from harness.errors import ConfigError
from harness.results.writer import atomic_write_text

TEXT_SUFFIXES = (".txt", ".md", ".text")
VOCAB_SIZE = 256  # byte-level


def source_files(inputs: list[Path]) -> list[Path]:
    """The files named, and the text files under the directories named, in sorted order."""
    files: list[Path] = []
    for path in inputs:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
            if not found:
                raise ConfigError(
                    f"{path} holds no text files ({', '.join(TEXT_SUFFIXES)}).",
                    "name the files, or a folder that holds some.",
                )
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise ConfigError(f"{path} is not a file or folder.", "check the path.")
    return files


def prepare(inputs: list[Path], out: Path, min_tokens: int = 1024) -> dict:
    """Write `out` (.bin) and `out.with_suffix('.json')` (the manifest); returns the manifest."""
    if out.suffix != ".bin":
        raise ConfigError(
            f"-o {out} must end in .bin (nanoGPT's layout).", "e.g. -o data/train.bin"
        )
    sources, chunks = [], []
    for path in source_files(inputs):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read {path}: {exc.strerror}.", "check its permissions."
            ) from exc
        sources.append(
            {
                "path": str(path),
                "sha256": hashlib.sha256(data).hexdigest(),
                "bytes": len(data),
                "tokens": len(data),
            }
        )
        chunks.append(data)
    blob = b"\n".join(chunks)
    if len(blob) < min_tokens:
        raise ConfigError(
            f"the text holds {len(blob)} bytes, fewer than {min_tokens} tokens.",
            "give more text: a run needs at least a few sequences to train and evaluate on.",
        )
    tokens = np.frombuffer(blob, dtype=np.uint8).astype(np.uint16)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tokens.tofile(tmp)
    tmp.replace(out)
    manifest = {
        "format": "nanoGPT .bin: flat token ids, no header",
        "dtype": "uint16",
        "tokenizer": "byte",
        "vocab_size": VOCAB_SIZE,
        "tokens": int(tokens.size),
        "bin": out.name,
        "bin_sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "sources": sources,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "joulebench_version": __version__,
        "use": f"benchmark.data.kind=bin benchmark.data.path={out} benchmark.data.dtype=uint16",
    }
    atomic_write_text(out.with_suffix(".json"), json.dumps(manifest, indent=2) + "\n")
    return manifest


def register(sub) -> None:
    data = sub.add_parser("data", help="prepare real data for the text benchmarks")
    data_sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    p = data_sub.add_parser(
        "prepare",
        help="text files -> a nanoGPT .bin of byte tokens and a manifest",
        description="Concatenate text files (or the .txt/.md files under folders) into byte "
        "tokens in nanoGPT's .bin layout, with a manifest of sources and hashes beside it.",
    )
    p.add_argument("inputs", nargs="+", type=Path, help="text files or folders")
    p.add_argument("-o", "--out", type=Path, required=True, help="the .bin to write")
    p.set_defaults(func=_cmd_prepare)


def _cmd_prepare(args) -> int:
    manifest = prepare(args.inputs, args.out)
    print(
        f"joulebench: wrote {args.out} ({manifest['tokens']:,} byte tokens from "
        f"{len(manifest['sources'])} file(s)) and {args.out.with_suffix('.json')}\n"
        f"  use: {manifest['use']}"
    )
    return 0
