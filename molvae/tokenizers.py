"""Tokenizers (SMILES atom-level regex, SELFIES symbols) and the token vocabulary.

A tokenizer turns a canonical SMILES into the model's string representation and
splits that into tokens; ``detokenize(tokenize(s)) == s`` holds exactly for every
string it accepts. The :class:`Vocabulary` maps tokens to integer ids and is saved
beside every model as JSON.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np
import selfies as sf

from molvae.errors import ConfigError, MolvaeError, UnknownTokenError, shorten

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3

# Atom-level SMILES regex (Schwaller et al. 2019, Molecular Transformer): bracket
# atoms are one token; two-letter organic-subset halogens before one-letter atoms;
# two-digit ring closures (%10..%99) before single digits.
SMILES_TOKEN_PATTERN = re.compile(
    r"(\[[^\[\]]+\]|Br|Cl|N|O|S|P|F|I|B|C|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|\*|\$|%[0-9]{2}|[0-9])"
)

Representation = Literal["smiles", "selfies"]


class TokenizationError(MolvaeError):
    """A string contains characters no token covers (or is not valid SELFIES)."""


class SmilesTokenizer:
    """Atom-level SMILES tokenizer; the representation is SMILES itself."""

    name: Representation = "smiles"

    def tokenize(self, text: str) -> list[str]:
        """Split a SMILES string into tokens; raises if any character is not covered."""
        tokens = SMILES_TOKEN_PATTERN.findall(text)
        if sum(map(len, tokens)) != len(text):
            # findall silently skips unmatched characters; find the first one so the
            # error names it instead of producing a token list that drops atoms.
            pos = 0
            for match in SMILES_TOKEN_PATTERN.finditer(text):
                if match.start() != pos:
                    break
                pos = match.end()
            raise TokenizationError(
                f"cannot tokenize {shorten(text)}: unexpected character {text[pos]!r} at position {pos}"
            )
        return tokens

    def detokenize(self, tokens: Iterable[str]) -> str:
        return "".join(tokens)

    def from_smiles(self, smiles: str) -> str:
        """Convert a (canonical) SMILES to this representation."""
        return smiles

    def to_smiles(self, text: str) -> str:
        """Convert a string of this representation back to SMILES (no validation)."""
        return text


class SelfiesTokenizer:
    """SELFIES tokenizer: tokens are SELFIES symbols like ``[C]``, ``[=Branch1]``."""

    name: Representation = "selfies"

    def tokenize(self, text: str) -> list[str]:
        try:
            tokens = list(sf.split_selfies(text))
        except ValueError as exc:  # split_selfies raises on a hanging '['
            problem = str(exc)
        else:
            # split_selfies passes text between symbols on with the next one ('X[C]').
            stray = next((t for t in tokens if not (t.startswith("[") and t.endswith("]") and t.count("[") == 1)), None)
            if stray is None and "".join(tokens) == text:
                return tokens
            problem = f"{stray!r} is not a SELFIES symbol" if stray is not None else "not a sequence of SELFIES symbols"
        # raised outside the except block: see Vocabulary.encode
        raise TokenizationError(f"cannot tokenize {shorten(text)}: {problem}")

    def detokenize(self, tokens: Iterable[str]) -> str:
        return "".join(tokens)

    def from_smiles(self, smiles: str) -> str:
        try:
            return sf.encoder(smiles, strict=True)
        except sf.EncoderError as exc:
            problem = str(exc)
        raise TokenizationError(f"SELFIES cannot encode {shorten(smiles)}: {problem}")  # see Vocabulary.encode

    def to_smiles(self, text: str) -> str:
        try:
            return sf.decoder(text)
        except sf.DecoderError:
            # A sampled token sequence that SELFIES rejects is an invalid decode,
            # reported as an empty string like any other failed generation.
            return ""


Tokenizer = SmilesTokenizer | SelfiesTokenizer


def get_tokenizer(representation: str) -> Tokenizer:
    """Return the tokenizer for ``"smiles"`` or ``"selfies"``."""
    if representation == "smiles":
        return SmilesTokenizer()
    if representation == "selfies":
        return SelfiesTokenizer()
    raise ConfigError(f"unknown representation {representation!r}; choose 'smiles' or 'selfies'")


class Vocabulary:
    """Bidirectional token ↔ id map with the special tokens at ids 0..3."""

    def __init__(self, tokens: Sequence[str]):
        tokens = list(tokens)
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ConfigError(f"vocabulary must start with {SPECIAL_TOKENS}, got {tokens[:4]}")
        if len(set(tokens)) != len(tokens):
            dupes = sorted(t for t, c in Counter(tokens).items() if c > 1)
            raise ConfigError(f"vocabulary has duplicate tokens: {dupes}")
        self.tokens: list[str] = tokens
        self.index: dict[str, int] = {t: i for i, t in enumerate(tokens)}

    @classmethod
    def build(cls, tokenized: Iterable[Iterable[str]], min_count: int = 1) -> Vocabulary:
        """Build from tokenized molecules; order is by frequency, ties alphabetical."""
        counts: Counter[str] = Counter()
        for toks in tokenized:
            counts.update(toks)
        for special in SPECIAL_TOKENS:
            counts.pop(special, None)
        ordered = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        return cls([*SPECIAL_TOKENS, *ordered])

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.tokens == other.tokens

    def encode(self, tokens: Sequence[str], molecule: str | None = None) -> list[int]:
        """Token ids (without BOS/EOS); raises :class:`~molvae.errors.UnknownTokenError` naming the token."""
        index = self.index
        try:
            return [index[t] for t in tokens]
        except KeyError as exc:
            unknown = exc.args[0]
        # Raised outside the except block, so the error carries no KeyError context: that one's
        # traceback would hold this frame in a reference cycle, and bulk encoding of a library
        # with many unknown tokens would pile up garbage until the cyclic collector runs.
        raise UnknownTokenError(unknown, molecule if molecule is not None else "".join(tokens))

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens up to (not including) the first EOS; PAD/BOS are dropped."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i in (PAD_ID, BOS_ID):
                continue
            out.append(self.tokens[i] if 0 <= i < len(self.tokens) else UNK)
        return out

    def decode_batch(self, ids: np.ndarray) -> list[list[str]]:
        return [self.decode(row) for row in ids]

    def to_dict(self) -> dict[str, Any]:
        return {"tokens": self.tokens}

    @classmethod
    def from_dict(cls, data: Any) -> Vocabulary:
        if not isinstance(data, dict) or not isinstance(data.get("tokens"), list):
            raise ConfigError("vocabulary JSON must be an object with a 'tokens' list")
        if not all(isinstance(t, str) for t in data["tokens"]):
            raise ConfigError("vocabulary tokens must all be strings")
        return cls(data["tokens"])
