from __future__ import annotations

import pytest
from rdkit import Chem

from molvae.errors import ConfigError, MolvaeError, UnknownTokenError
from molvae.tokenizers import (
    SPECIAL_TOKENS,
    SelfiesTokenizer,
    SmilesTokenizer,
    TokenizationError,
    Vocabulary,
    get_tokenizer,
)
from tests.conftest import moses_smiles


@pytest.mark.parametrize(
    "smiles, tokens",
    [
        ("c1cc[nH]c1", ["c", "1", "c", "c", "[nH]", "c", "1"]),
        ("C[C@@H](N)C(=O)O", ["C", "[C@@H]", "(", "N", ")", "C", "(", "=", "O", ")", "O"]),
        ("C[N+](C)(C)C", ["C", "[N+]", "(", "C", ")", "(", "C", ")", "C"]),
        ("ClCCBr", ["Cl", "C", "C", "Br"]),
        ("C%10CC%10", ["C", "%10", "C", "C", "%10"]),
        ("F/C=C/F", ["F", "/", "C", "=", "C", "/", "F"]),
        ("C#N", ["C", "#", "N"]),
        ("[Na+].[Cl-]", ["[Na+]", ".", "[Cl-]"]),
        ("BrB", ["Br", "B"]),
    ],
)
def test_smiles_tokens(smiles: str, tokens: list[str]) -> None:
    tok = SmilesTokenizer()
    assert tok.tokenize(smiles) == tokens
    assert tok.detokenize(tokens) == smiles


def test_smiles_tokenizer_names_unexpected_character() -> None:
    with pytest.raises(TokenizationError, match=r"'x' at position 2"):
        SmilesTokenizer().tokenize("CCxC")


def test_smiles_round_trip_100k_moses() -> None:
    tok = SmilesTokenizer()
    smiles = moses_smiles(100_000)
    assert len(smiles) == 100_000
    bad = [s for s in smiles if tok.detokenize(tok.tokenize(s)) != s]
    assert bad == []


def test_selfies_round_trip_to_same_molecule() -> None:
    tok = SelfiesTokenizer()
    smiles = moses_smiles(5_000)
    mismatches = []
    for s in smiles:
        canonical = Chem.MolToSmiles(Chem.MolFromSmiles(s))
        text = tok.from_smiles(canonical)
        tokens = tok.tokenize(text)
        assert tok.detokenize(tokens) == text
        back = Chem.MolToSmiles(Chem.MolFromSmiles(tok.to_smiles(text)))
        if back != canonical:
            mismatches.append((s, back))
    assert mismatches == []


def test_selfies_rejects_non_selfies_text() -> None:
    with pytest.raises(TokenizationError):
        SelfiesTokenizer().tokenize("[C][O")
    # text between symbols: split_selfies hands it on glued to the next symbol
    with pytest.raises(TokenizationError, match="'X\\[C\\]' is not a SELFIES symbol"):
        SelfiesTokenizer().tokenize("[C]X[C]")
    with pytest.raises(TokenizationError):
        SelfiesTokenizer().tokenize("CCO")


def test_get_tokenizer_unknown() -> None:
    with pytest.raises(ConfigError, match="representation"):
        get_tokenizer("inchi")


def test_vocabulary_build_and_round_trip() -> None:
    tok = SmilesTokenizer()
    vocab = Vocabulary.build(tok.tokenize(s) for s in ["CCO", "c1ccccc1", "CCN"])
    assert vocab.tokens[:4] == list(SPECIAL_TOKENS)
    assert vocab.tokens[4:6] == ["c", "C"]  # most frequent first (6 aromatic c, 4 C)
    ids = vocab.encode(tok.tokenize("CCO"))
    assert vocab.decode([*ids, 2, 5]) == ["C", "C", "O"]  # stops at EOS
    again = Vocabulary.from_dict(vocab.to_dict())
    assert again == vocab


def test_unknown_token_names_token_and_molecule() -> None:
    vocab = Vocabulary.build([["C", "O"]])
    with pytest.raises(UnknownTokenError) as info:
        vocab.encode(["C", "[Se]"], molecule="C[Se]")
    assert info.value.token == "[Se]"
    assert "'[Se]'" in str(info.value) and "'C[Se]'" in str(info.value)


def test_vocabulary_validation() -> None:
    with pytest.raises(ConfigError):
        Vocabulary(["C", "O"])
    with pytest.raises(ConfigError, match="duplicate"):
        Vocabulary([*SPECIAL_TOKENS, "C", "C"])
    with pytest.raises(ConfigError):
        Vocabulary.from_dict({"tokens": [1, 2]})


def test_token_errors_leave_no_reference_cycles() -> None:
    """Bulk encoding turns errors into values; each must be freed at once, not by the cyclic collector."""
    import gc
    import weakref

    vocab = Vocabulary([*SPECIAL_TOKENS, "C", "O"])
    selfies = SelfiesTokenizer()
    gc.collect()
    gc.disable()
    try:
        for raise_it in (
            lambda: vocab.encode(["C", "N"]),
            lambda: selfies.tokenize("[C][O"),
            lambda: selfies.from_smiles("C[N+](C)(C)(C)(C)C"),
        ):
            err = None
            try:
                raise_it()
            except MolvaeError as exc:
                err = weakref.ref(exc)
                assert exc.__context__ is None
            assert err is not None and err() is None  # freed when the last reference went, with cyclic GC off
    finally:
        gc.enable()
