"""Write CLIPTokenizer's vocab.json and merges.txt from OpenAI's CLIP BPE file.

The BPE merges ship as open_clip/bpe_simple_vocab_16e6.txt.gz in the open_clip_torch
wheel (MIT). Fetch it without installing open_clip (it would pull in a CUDA torch):

    pip download open_clip_torch --no-deps -d /tmp/oc
    cd /tmp/oc && unzip -o open_clip_torch-*.whl open_clip/bpe_simple_vocab_16e6.txt.gz
    python engine/model_configs/make_clip_tokenizer.py \
        /tmp/oc/open_clip/bpe_simple_vocab_16e6.txt.gz engine/model_configs/clip_tokenizer

The vocabulary is built the way CLIP's own tokenizer builds it: the 256 byte symbols,
the same with the end-of-word marker, one token per merge, then the two special tokens
(49408 tokens in all, the size every SD text encoder's embedding table has).
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

N_MERGES = 49152 - 256 - 2  # CLIP uses the first 48894 merges of the file


def byte_symbols() -> list[str]:
    """The printable stand-in for each byte value, in CLIP's (and GPT-2's) order."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def build(bpe_gz: Path) -> tuple[dict[str, int], list[str]]:
    with gzip.open(bpe_gz) as f:
        lines = f.read().decode("utf-8").split("\n")
    merges = lines[1 : N_MERGES + 1]  # the first line is a version header
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols]
    tokens += ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == 49408, len(vocab)
    return vocab, merges


def main(argv: list[str]) -> None:
    bpe_gz, out = Path(argv[1]), Path(argv[2])
    vocab, merges = build(bpe_gz)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv)
