"""Property-based tests: tokenizers and chemistry functions fed arbitrary strings never crash."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from molvae import chemistry
from molvae.errors import MolvaeError
from molvae.tokenizers import SelfiesTokenizer, SmilesTokenizer, Vocabulary

SMILES_ALPHABET = "CNOSPFIBrcnospl()[]=#-+\\/@%0123456789.*Hae "
smiles_like = st.text(alphabet=SMILES_ALPHABET, max_size=60)


@settings(max_examples=300, deadline=None)
@given(st.one_of(smiles_like, st.text(max_size=40)))
def test_smiles_tokenizer_round_trips_or_raises_tokenization_error(text: str) -> None:
    tok = SmilesTokenizer()
    try:
        tokens = tok.tokenize(text)
    except MolvaeError as exc:
        assert "cannot tokenize" in str(exc)
        return
    assert tok.detokenize(tokens) == text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["[C]", "[O]", "[N]", "[=C]", "[Ring1]", "[Branch1]", "[#N]", "[F]"]), max_size=20))
def test_selfies_tokens_round_trip_and_always_decode_to_a_string(symbols: list[str]) -> None:
    tok = SelfiesTokenizer()
    text = "".join(symbols)
    assert tok.tokenize(text) == symbols
    smiles = tok.to_smiles(text)
    assert isinstance(smiles, str)
    if smiles:
        assert chemistry.is_valid(smiles)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(smiles_like, st.text(max_size=30)), min_size=1, max_size=8))
def test_chemistry_functions_return_nan_not_exceptions(strings: list[str]) -> None:
    table = chemistry.property_table(strings, n_jobs=1)
    assert len(table) == len(strings)
    for i, s in enumerate(strings):
        valid = chemistry.is_valid(s)
        assert bool(table["valid"][i]) == valid
        if not valid:
            assert math.isnan(table["qed"][i]) and math.isnan(table["esol"][i])
    assert len(chemistry.murcko_scaffolds(strings)) == len(strings)
    assert len(chemistry.morgan_fingerprints(strings)) == len(strings)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=5), max_size=10))
def test_vocabulary_unknown_tokens_always_name_themselves(tokens: list[str]) -> None:
    vocab = Vocabulary.build([["C", "O"]])
    try:
        ids = vocab.encode(tokens)
    except MolvaeError as exc:
        assert any(repr(t) in str(exc) for t in tokens if t not in vocab)
        return
    assert all(t in vocab for t in tokens) and len(ids) == len(tokens)
