"""Fine-tuned model names: the rules a user meets when naming a model."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from tunelab.domain.errors import ValidationFailed
from tunelab.domain.naming import MAX_NAME_LENGTH, ModelName, check_model_name, is_valid_name, name_problems

ALNUM = string.ascii_letters + string.digits
alnum = st.sampled_from(ALNUM)
name_char = st.sampled_from(ALNUM + "-")


@st.composite
def valid_names(draw: st.DrawFn) -> str:
    """The grammar: one alphanumeric, or alphanumeric + (letters, digits, hyphens)* + alphanumeric."""
    first = draw(alnum)
    if draw(st.booleans()):
        return first
    middle = draw(st.text(name_char, max_size=MAX_NAME_LENGTH - 2))
    return first + middle + draw(alnum)


class Request(BaseModel):
    name: ModelName


def _refusal(name: str) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        check_model_name(name)
    return caught.value


@given(valid_names())
def test_names_from_the_grammar_are_accepted(name: str) -> None:
    assert check_model_name(name) == name
    assert is_valid_name(name)
    assert Request(name=name).name == name


@given(
    st.text(min_size=1, max_size=80).filter(lambda s: any(c not in ALNUM + "-" for c in s)),
)
def test_a_character_outside_letters_digits_hyphen_is_refused_naming_the_rule(name: str) -> None:
    error = _refusal(name)
    messages = [d.message for d in error.details]
    assert all(d.field == "name" for d in error.details)
    assert any("only letters (A–Z, a–z), digits and hyphens" in m for m in messages)
    assert not is_valid_name(name)


@given(st.text(name_char, max_size=70).map(lambda s: "-" + s))
def test_a_leading_hyphen_is_refused(name: str) -> None:
    assert any("must start with a letter or digit" in d.message for d in _refusal(name).details)


@given(st.text(name_char, max_size=70).map(lambda s: s + "-"))
def test_a_trailing_hyphen_is_refused(name: str) -> None:
    assert any("must end with a letter or digit" in d.message for d in _refusal(name).details)


@given(st.text(name_char, min_size=MAX_NAME_LENGTH + 1, max_size=300))
def test_more_than_63_characters_is_refused_with_the_length(name: str) -> None:
    assert any(
        f"{len(name)} characters long: it must be at most 63" in d.message for d in _refusal(name).details
    )


@given(st.text(max_size=100))
def test_the_checker_and_the_pattern_agree_on_every_string(name: str) -> None:
    assert (name_problems(name) == []) == is_valid_name(name)


def test_an_empty_name_is_refused() -> None:
    error = _refusal("")
    assert error.details[0].field == "name"
    assert "empty" in error.message
    assert "1–63" in error.message


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("support bot", "spaces"),
        ("support_bot", "underscores ('_')"),
        ("support.bot", "'.'"),
        ("café-bot", "'é'"),
        ("bot\tv1", "U+0009"),
        ("bot\nv1", "U+000A"),
    ],
)
def test_the_message_names_the_offending_character(name: str, words: str) -> None:
    assert words in _refusal(name).message


def test_exactly_63_characters_is_accepted_and_64_is_not() -> None:
    assert check_model_name("a" * 63) == "a" * 63
    assert "64 characters long" in _refusal("a" * 64).message


def test_several_broken_rules_are_all_reported() -> None:
    error = _refusal("-" + "_" * 70 + "-")
    assert len(error.details) == 4
    assert error.message.startswith("Name breaks 4 rules")


def test_the_field_path_can_be_given_for_nested_names() -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_model_name("bad name", field="base_fine_tuned_model")
    assert caught.value.details[0].field == "base_fine_tuned_model"


def test_a_trailing_newline_does_not_slip_through() -> None:
    # `re.match(...$)` would accept "abc\n"; the checker must not.
    assert not is_valid_name("abc\n")


def test_in_a_pydantic_model_the_error_says_which_rule_failed() -> None:
    with pytest.raises(ValidationError) as caught:
        Request(name="my_model")
    (error,) = caught.value.errors()
    assert error["loc"] == ("name",)
    assert error["type"] == "model_name"
    assert error["msg"] == (
        "Name may contain only letters (A–Z, a–z), digits and hyphens; it contains underscores ('_')."
    )


def test_in_a_pydantic_model_a_non_string_is_refused() -> None:
    with pytest.raises(ValidationError):
        Request.model_validate({"name": 42})


def test_the_openapi_schema_documents_the_rules() -> None:
    schema = Request.model_json_schema()["properties"]["name"]
    assert schema["maxLength"] == 63
    assert schema["minLength"] == 1
    assert "hyphens" in schema["description"]
    assert is_valid_name("support-bot-v1")
