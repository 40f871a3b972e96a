"""Access strings: Redis ACL rules checked as ElastiCache checks them, kept as AWS shows them and
in the form a node applies."""

from __future__ import annotations

import pytest

from controlplane.handlers.access_strings import parse
from controlplane.protocol.errors import ServiceError


def test_the_text_is_kept_as_given_and_the_rules_say_on_or_off_first() -> None:
    parsed = parse("  on ~app::*   -@all +@read +get  ")
    assert parsed.text == "on ~app::* -@all +@read +get"
    assert parsed.rules == ("on", "~app::*", "-@all", "+@read", "+get")
    assert parsed.minimum_version == "6.0"


def test_a_user_is_off_unless_the_string_says_on_and_the_last_word_wins() -> None:
    # AWS: "If neither is specified in the access string, the user is assigned off".
    assert parse("~* +@all").rules[0] == "off"
    assert parse("on ~* +@all off").rules == ("off", "~*", "+@all")
    assert parse("off on allkeys allcommands").rules == ("on", "allkeys", "allcommands")


@pytest.mark.parametrize(("text", "version"), [
    ("on ~* &chan:* +@all", "6.2"),
    ("on allchannels resetchannels +@all", "6.2"),
    ("on %R~read:* %W~write:* +@all", "7.0"),
    ("on ~* +@all -config|set", "7.0"),
    ("on ~a* +get (~b* +set)", "7.0"),
    ("on ~* +@all clearselectors", "7.0"),
    ("on ~* +client|setname +select|0 nocommands", "6.0"),
])
def test_rules_need_the_engine_version_that_introduced_them(text: str, version: str) -> None:
    assert parse(text).minimum_version == version


def test_a_selector_is_one_rule() -> None:
    assert parse("on ~a* +get ( ~b*  +set )").rules == ("on", "~a*", "+get", "( ~b* +set )")


@pytest.mark.parametrize(("text", "needle"), [
    ("on ~* +@all >secretpassword", "Passwords cannot be given"),
    ("on ~* +@all nopass", "Passwords cannot be given"),
    ("on ~* +@all #" + "a" * 64, "Passwords cannot be given"),
    ("on ~* resetpass", "Passwords cannot be given"),
    ("on reset ~* +@all", "reset"),
    ("on ~* +gett", "Unknown command 'gett'"),
    ("on ~* +@everything", "Unknown command category 'everything'"),
    ("on ~* +config", "CONFIG is a restricted command"),
    ("on ~* +config|get", "CONFIG is a restricted command"),
    ("on ~* +client|flyaway", "Unknown subcommand 'flyaway' of CLIENT"),
    ("on ~* -get|x", "first argument"),
    ("on ~* +get|", "no subcommand"),
    ("on ~ +@all", "empty pattern"),
    ("on & +@all", "empty pattern"),
    ("on ~* +@all banana", "Unknown rule 'banana'"),
    ("on ~* (~a* +get", "Unclosed selector"),
    ("on ~* ()", "empty selector"),
    ("on ~* (on ~a*)", "not allowed inside the selector"),
    ("   ", "at least one rule"),
])
def test_bad_rules_are_refused_by_name(text: str, needle: str) -> None:
    with pytest.raises(ServiceError) as err:
        parse(text)
    assert err.value.name == "InvalidParameterValueException"
    assert needle in err.value.message


def test_a_restricted_command_may_be_taken_away() -> None:
    assert parse("on ~* +@all -config -debug").rules[-2:] == ("-config", "-debug")


def test_commands_and_categories_are_case_insensitive_but_kept_as_given() -> None:
    assert parse("ON ~* +GET -@Dangerous").rules == ("on", "~*", "+GET", "-@Dangerous")
