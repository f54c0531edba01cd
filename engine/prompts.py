"""Prompt text in, structured prompt out: A1111's attention syntax and `<lora:…>` tags.

Pure text, no torch, so the window (which shows what a prompt asks for) and the engine
(which encodes it) read a prompt the same way.

Why our own parser rather than compel: a prompt copied from an AUTOMATIC1111/Forge PNG
must mean here what it meant there, and compel reads the same text differently —
`(red:1.3)` is not A1111's weight syntax in compel (it writes `(red)1.3`), `[word]`
means something else, and it has no `BREAK`. A1111's rules fit in one small function,
tested against A1111's own documented examples (tests/engine/test_prompts.py):

- `(text)` multiplies the attention of `text` by 1.1, `((text))` by 1.21, and
  `[text]` divides it by 1.1;
- `(text:1.3)` multiplies by 1.3 (nested brackets multiply);
- an unclosed bracket applies to the end of the prompt;
- `\\(`, `\\)`, `\\[`, `\\]`, `\\\\` are the literal characters;
- `BREAK` (upper case, a whole word) ends the current 75-token chunk.

Extra-network tags (`<lora:NAME:0.8>`) are removed from the text that is encoded, as in
A1111; their order of numbers is A1111's: `<lora:NAME:te:unet>` (the second number is
the UNet weight; one number sets both), and `te=`/`unet=` may be given by name.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1
BREAK_WEIGHT = -1.0  # A1111 marks a BREAK as the fragment ("BREAK", -1)

# One token of A1111's attention grammar per match; the order of the alternatives matters.
_ATTENTION = re.compile(
    r"""
\\\(|
\\\)|
\\\[|
\\]|
\\\\|
\\|
\(|
\[|
:\s*([+-]?[.\d]+)\s*\)|
\)|
]|
[^\\()\[\]:]+|
:
""",
    re.X,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
# A1111's extra-network tag: <kind:arguments>
_EXTRA_NETWORK = re.compile(r"<(\w+):([^>]+)>")
LORA_KINDS = frozenset({"lora", "lyco"})


@dataclass(frozen=True)
class Fragment:
    """A run of prompt text with one attention weight; `is_break` marks a BREAK."""

    text: str
    weight: float

    @property
    def is_break(self) -> bool:
        return self.weight == BREAK_WEIGHT and self.text == "BREAK"


@dataclass(frozen=True)
class LoraTag:
    """`<lora:name:te:unet>`: a LoRA and its text-encoder and UNet weights."""

    name: str
    te_weight: float = 1.0
    unet_weight: float = 1.0

    @property
    def tag(self) -> str:
        return format_lora_tag(self.name, self.unet_weight, self.te_weight)


@dataclass(frozen=True)
class ParsedPrompt:
    """A prompt read the A1111 way."""

    source: str  # the text as written, tags included (what metadata keeps)
    text: str  # the text to encode: tags removed
    fragments: tuple[Fragment, ...]
    loras: tuple[LoraTag, ...] = ()
    problems: tuple[str, ...] = field(default=())  # tags that could not be read


def parse_attention(text: str) -> list[Fragment]:
    """A1111's `parse_prompt_attention`: the text split into runs with weights.

    Runs of equal weight are merged; an empty prompt gives one empty fragment; BREAK
    gives Fragment("BREAK", -1).
    """
    res: list[list[object]] = []
    round_brackets: list[int] = []
    square_brackets: list[int] = []

    def multiply_range(start: int, multiplier: float) -> None:
        for p in range(start, len(res)):
            res[p][1] = float(res[p][1]) * multiplier  # type: ignore[arg-type]

    for match in _ATTENTION.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\"):
            res.append([token[1:], 1.0])
        elif token == "(":
            round_brackets.append(len(res))
        elif token == "[":
            square_brackets.append(len(res))
        elif weight is not None and round_brackets:
            try:
                value = float(weight)
            except ValueError:  # "(a:1.2.3)": A1111 would fail; read it as text
                res.append([token, 1.0])
                continue
            multiply_range(round_brackets.pop(), value)
        elif token == ")" and round_brackets:
            multiply_range(round_brackets.pop(), ROUND_MULTIPLIER)
        elif token == "]" and square_brackets:
            multiply_range(square_brackets.pop(), SQUARE_MULTIPLIER)
        else:
            for i, part in enumerate(_BREAK.split(token)):
                if i > 0:
                    res.append(["BREAK", BREAK_WEIGHT])
                res.append([part, 1.0])

    for pos in round_brackets:
        multiply_range(pos, ROUND_MULTIPLIER)
    for pos in square_brackets:
        multiply_range(pos, SQUARE_MULTIPLIER)
    if not res:
        res = [["", 1.0]]
    i = 0
    while i + 1 < len(res):
        if res[i][1] == res[i + 1][1]:
            res[i][0] = str(res[i][0]) + str(res[i + 1][0])
            res.pop(i + 1)
        else:
            i += 1
    return [Fragment(str(t), float(w)) for t, w in res]  # type: ignore[arg-type]


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _lora_tag(arguments: str) -> tuple[LoraTag | None, str | None]:
    items = arguments.split(":")
    positional = [i.strip() for i in items if "=" not in i]
    named = dict(i.split("=", 1) for i in items if "=" in i)
    named = {k.strip(): v.strip() for k, v in named.items()}
    if not positional or not positional[0]:
        return None, f"<lora:{arguments}> has no LoRA name"
    name = positional[0]
    te = _number(positional[1]) if len(positional) > 1 else 1.0
    if "te" in named:
        te = _number(named["te"])
    unet = _number(positional[2]) if len(positional) > 2 else te
    if "unet" in named:
        unet = _number(named["unet"])
    if te is None or unet is None:
        return None, f"<lora:{arguments}> has a weight that is not a number"
    return LoraTag(name, te_weight=te, unet_weight=unet), None


def extract_extra_networks(prompt: str) -> tuple[str, list[LoraTag], list[str]]:
    """(prompt without `<kind:…>` tags, the LoRA tags in order, problems).

    Like A1111 every extra-network tag is removed from the encoded text; kinds other
    than lora/lyco are reported as not supported.
    """
    loras: list[LoraTag] = []
    problems: list[str] = []

    def remove(match: re.Match[str]) -> str:
        kind, arguments = match.group(1), match.group(2)
        if kind.lower() in LORA_KINDS:
            tag, problem = _lora_tag(arguments)
            if tag is not None:
                loras.append(tag)
            if problem is not None:
                problems.append(problem)
        else:
            problems.append(f"<{kind}:…> tags are not supported and were left out")
        return ""

    return _EXTRA_NETWORK.sub(remove, prompt), loras, problems


def parse_prompt(prompt: str) -> ParsedPrompt:
    """The whole reading of a prompt: tags taken out, attention parsed."""
    text, loras, problems = extract_extra_networks(prompt)
    return ParsedPrompt(
        source=prompt,
        text=text,
        fragments=tuple(parse_attention(text)),
        loras=tuple(loras),
        problems=tuple(problems),
    )


def format_weight(weight: float) -> str:
    """A weight as A1111 writes it: 1, 0.8, 0.75 (no trailing zeros)."""
    return f"{weight:.4f}".rstrip("0").rstrip(".") if weight != int(weight) else str(int(weight))


def format_lora_tag(name: str, weight: float = 1.0, te_weight: float | None = None) -> str:
    """`<lora:name:weight>`, or `<lora:name:te:unet>` when the text encoder's differs."""
    if te_weight is None or te_weight == weight:
        return f"<lora:{name}:{format_weight(weight)}>"
    return f"<lora:{name}:{format_weight(te_weight)}:{format_weight(weight)}>"


def lora_names(prompt: str) -> list[str]:
    """The LoRA names a prompt mentions, in order, each once."""
    seen: list[str] = []
    for tag in extract_extra_networks(prompt)[1]:
        if tag.name not in seen:
            seen.append(tag.name)
    return seen
