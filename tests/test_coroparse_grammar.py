"""corosync.conf grammar: what the parser accepts, and every error with its FILE:LINE."""

from __future__ import annotations

import pytest

from pycorosync.exec.config_error import ConfigError
from pycorosync.exec.coroparse import ParsedConfig, parse_config_text
from pycorosync.lib.cmap_types import ValueType


def parse(text: str | bytes) -> ParsedConfig:
    return parse_config_text(text, file="t.conf")


def values(text: str | bytes) -> dict[str, object]:
    return {entry.key: entry.value for entry in parse(text)}


def error_of(text: str | bytes) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    return str(caught.value)


def test_empty_file_has_no_keys() -> None:
    assert len(parse("")) == 0
    assert len(parse("\n\n   \n")) == 0


def test_comments_are_whole_lines_only() -> None:
    text = "# top\n   # indented\n\t#tab\nfoo {\n  # inside\n  key: value # not a comment\n}\n"
    assert values(text) == {"foo.key": "value # not a comment"}


def test_hash_after_text_is_part_of_the_value() -> None:
    assert values("aaa: #value\n") == {"aaa": "#value"}


def test_crlf_and_trailing_blanks_are_removed() -> None:
    text = b"foo {\r\n  key: value \t\xc2\xa0\r\n}\r\n"
    assert values(text) == {"foo.key": "value"}


def test_leading_blanks_of_the_value_are_removed_but_inner_ones_kept() -> None:
    assert values("foo {\n key:    a  b   c\n}\n") == {"foo.key": "a  b   c"}


def test_value_splits_at_the_first_colon() -> None:
    text = "nodelist {\nnode {\nring0_addr: fe80::1:2\n}\n}\nkey:: v\n"
    assert values(text) == {"nodelist.node.0.ring0_addr": "fe80::1:2", "key": ": v"}


def test_value_may_contain_a_closing_brace() -> None:
    assert values("foo {\nkey: a}b}\n}\n") == {"foo.key": "a}b}"}


def test_empty_value_is_an_empty_string() -> None:
    assert values("foo {\nkey:\n}\n") == {"foo.key": ""}


@pytest.mark.parametrize(
    "opening",
    ["totem {", "totem{", "totem: {", "totem :: {", "  totem   {", "\ttotem\t{\t"],
)
def test_section_name_forms(opening: str) -> None:
    assert values(f"{opening}\ncluster_name: c\n}}\n") == {"totem.cluster_name": "c"}


def test_nested_unknown_sections_make_dotted_keys() -> None:
    text = "a {\n b {\n  c {\n   key: v\n  }\n }\n}\n"
    assert values(text) == {"a.b.c.key": "v"}


def test_unknown_top_level_keys_are_kept() -> None:
    assert values("unknown_key: 1\n") == {"unknown_key": "1"}


def test_repeated_key_keeps_first_position_and_last_value() -> None:
    parsed = parse("foo {\nkey: 1\nother: x\nkey: 2\n}\n")
    assert [(e.key, e.value, e.line) for e in parsed] == [
        ("foo.key", "2", 4),
        ("foo.other", "x", 3),
    ]


def test_line_of_each_key() -> None:
    parsed = parse("# c\nfoo {\n\n  key: v\n}\n")
    assert parsed.line_of("foo.key") == 4
    assert parsed.line_of("foo") == 2


def test_line_of_exactly_510_bytes_is_accepted() -> None:
    line = "key:" + "v" * 506
    assert len(line) == 510
    assert values(line + "\n")["key"] == "v" * 506
    assert values(line)["key"] == "v" * 506  # last line without a newline


def test_line_of_511_bytes_is_too_long() -> None:
    line = "key:" + "v" * 507
    assert error_of("foo {\n" + line + "\n}\n") == "t.conf:2: Line too long"
    assert error_of("foo {\n}\n" + line) == "t.conf:3: Line too long"


def test_the_limit_counts_bytes_not_characters() -> None:
    line = "key:" + "é" * 254  # 4 + 508 bytes
    assert error_of(line + "\n") == "t.conf:1: Line too long"


def test_a_comment_line_is_limited_too() -> None:
    assert error_of("#" * 511 + "\n") == "t.conf:1: Line too long"


def test_the_carriage_return_counts_towards_the_limit() -> None:
    line = "key:" + "v" * 506
    assert values(line + "\n")["key"] == "v" * 506
    assert error_of(line + "\r\n") == "t.conf:1: Line too long"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{\n}\n", "t.conf:1: Missing section name before opening bracket '{'"),
        ("  :  {\n}\n", None),  # ":" alone is a (strange but legal) section name
        ("foo {\n{ x\n", "t.conf:2: Extra characters after opening bracket '{'"),
        ("foo { bar\n}\n", "t.conf:1: Extra characters after opening bracket '{'"),
        ("foo {{\n}\n", "t.conf:1: Extra characters after opening bracket '{'"),
        ("foo {\nkey: {value}\n}\n", "t.conf:2: Extra characters after opening bracket '{'"),
        ("foo {\n:value\n}\n", "t.conf:2: Key name can't be empty"),
        ("foo {\n  \t:value\n}\n", "t.conf:2: Key name can't be empty"),
        ("foo {\n} x\n", "t.conf:2: Extra characters before or after closing bracket '}'"),
        ("foo {\nx }\n", "t.conf:2: Extra characters before or after closing bracket '}'"),
        ("foo {\n}\n}\n", "t.conf:3: Unexpected closing brace"),
        ("foo {\njust words\n}\n", "t.conf:2: Line is not opening or closing section or key value"),
        ("foo {\nkey: v\n", "t.conf:2: Missing closing brace"),
        ("a {\nb {\n\n# end\n", "t.conf:4: Missing closing brace"),
    ],
)
def test_grammar_errors(text: str, expected: str | None) -> None:
    if expected is None:
        parse(text)
    else:
        assert error_of(text) == expected


def test_key_of_a_lone_colon_is_not_empty() -> None:
    # Corosync keeps the colon when a blank follows it, so the key is ":" -- too short for a
    # cmap name at the top level, a valid name ("foo.:") inside a section.
    assert error_of(": value\n") == (
        't.conf:1: Can\'t store key ":" into icmap, returned error is CS_ERR_NAME_TOO_LONG'
    )
    assert values("foo {\n: value\n}\n") == {"foo.:": "value"}


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("ab: v\n", "ab"),
        ("bad key: v\n", "bad key"),
        ("foo {\nkey!: v\n}\n", "foo.key!"),
        ("my section {\nkey: v\n}\n", "my section.key"),
    ],
)
def test_invalid_cmap_key_names(text: str, key: str) -> None:
    line = text.count("\n", 0, text.index(":")) + 1
    assert error_of(text) == (
        f't.conf:{line}: Can\'t store key "{key}" into icmap, returned error is '
        "CS_ERR_NAME_TOO_LONG"
    )


def test_a_section_with_an_invalid_name_but_no_keys_is_accepted() -> None:
    assert len(parse("my section {\n}\n")) == 0


def test_path_length_limits() -> None:
    # parent (100) + "." + name must stay below 255 bytes.
    parent = "p" * 100
    ok_name = "s" * 153  # 100 + 153 + 1 = 254
    assert values(f"{parent} {{\n{ok_name}: v\n}}\n") == {f"{parent}.{ok_name}": "v"}
    assert error_of(f"{parent} {{\n{'s' * 154}: v\n}}\n") == (
        "t.conf:2: New key makes total cmap path too long"
    )
    assert error_of(f"{parent} {{\n{'s' * 154} {{\n}}\n}}\n") == (
        "t.conf:2: Start of section makes total cmap path too long"
    )


def test_top_level_key_length_limit() -> None:
    assert values("k" * 253 + ": v\n") == {"k" * 253: "v"}
    assert error_of("k" * 254 + ": v\n") == "t.conf:1: New key makes total cmap path too long"


def test_deep_nesting_is_bounded_by_the_path_limit_not_the_stack() -> None:
    text = "ab {\n" * 200
    assert error_of(text) == "t.conf:86: Start of section makes total cmap path too long"


def test_nul_byte_is_refused() -> None:
    assert error_of(b"foo {\nkey: a\x00b\n}\n") == "t.conf:2: Line contains a NUL byte"


def test_invalid_utf8_is_read_as_latin1() -> None:
    assert values(b"foo {\nkey: caf\xe9\n}\n") == {"foo.key": "café"}


def test_trailing_latin1_no_break_space_is_blank() -> None:
    assert values(b"foo {\nkey: v\xa0\n}\n") == {"foo.key": "v"}


def test_every_unknown_value_is_a_string() -> None:
    parsed = parse("foo {\ntoken: 5\n}\n")
    entry = parsed.entry("foo.token")
    assert entry is not None
    assert entry.vtype is ValueType.STRING
    assert entry.value == "5"
