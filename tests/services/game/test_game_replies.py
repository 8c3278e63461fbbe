"""Reply parsing: OK, ERR/ERROR, other elements, and everything that must be rejected."""

import pytest

from services.game.framing import GameProtocolError
from services.game.replies import parse_reply


def test_ok_with_attributes():
    reply = parse_reply(b'<OK id="12345"/>')

    assert reply.kind == "ok"
    assert reply.ok
    assert not reply.is_error
    assert reply.tag == "OK"
    assert reply.get("id") == "12345"
    assert reply.code is None
    assert reply.raw == b'<OK id="12345"/>'


def test_ok_without_attributes():
    reply = parse_reply(b"<OK/>")

    assert reply.ok
    assert reply.attributes == {}


def test_err_with_code():
    reply = parse_reply(b'<ERR code="REGISTER_DENIED"/>')

    assert reply.kind == "error"
    assert reply.is_error
    assert reply.tag == "ERR"
    assert reply.code == "REGISTER_DENIED"
    assert reply.message is None


def test_error_with_msg():
    reply = parse_reply(b'<ERROR code="LOGIN_EXISTS" msg="login &quot;x&quot; is taken"/>')

    assert reply.is_error
    assert reply.tag == "ERROR"
    assert reply.code == "LOGIN_EXISTS"
    assert reply.message == 'login "x" is taken'


def test_error_with_m_attribute():
    assert parse_reply(b'<ERROR m="busy"/>').message == "busy"


def test_error_with_text():
    reply = parse_reply(b"<ERROR code='E1'>server is busy</ERROR>")

    assert reply.code == "E1"
    assert reply.message == "server is busy"


@pytest.mark.parametrize(
    "frame, tag, name, value",
    [
        (b'<MYPARAM login="bot1" level="10"/>', "MYPARAM", "level", "10"),
        (b'<KEY s="abc123"/>', "KEY", "s", "abc123"),
        (b'<SH c="a" s="" p="0" m="1"><O id="1"/></SH>', "SH", "m", "1"),
        (b'<BLOOK><BATTLE t="40"/></BLOOK>', "BLOOK", "t", None),
    ],
)
def test_other_elements(frame, tag, name, value):
    reply = parse_reply(frame)

    assert reply.kind == "other"
    assert reply.tag == tag
    assert reply.get(name) == value
    assert reply.code is None


def test_other_element_children_reachable():
    reply = parse_reply(b'<SH c="a"><O id="1"/><O id="2"/></SH>')

    assert [child.get("id") for child in reply.element] == ["1", "2"]


def test_cyrillic_in_both_encodings():
    text = '<MYPARAM login="Странник"/>'
    assert parse_reply(text.encode("utf-8")).get("login") == "Странник"
    assert parse_reply(text.encode("cp1251"), "cp1251").get("login") == "Странник"


def test_wrong_encoding_is_protocol_error():
    with pytest.raises(GameProtocolError, match="not valid utf-8"):
        parse_reply('<OK l="Странник"/>'.encode("cp1251"))


def test_unit_separator_stripped():
    assert parse_reply(b"\x1f<OK/>\x1f").ok


@pytest.mark.parametrize(
    "frame, message",
    [
        (b"%%% this is not XML %%%", "not well-formed"),
        (b"<OK", "not well-formed"),
        (b"<OK/><OK/>", "not well-formed"),
        (b"OK", "not well-formed"),
        (b"", "empty"),
        (b"   ", "empty"),
        (b"\xff\xfe<OK/>", "not valid utf-8"),
        (b'<OK a="1" a="2"/>', "not well-formed"),
        (b"<OK>&undefined;</OK>", "not well-formed"),
        (b'<?xml version="1.0" encoding="utf-8"?><OK/>', "encoding declaration"),
    ],
)
def test_garbage_rejected(frame, message):
    with pytest.raises(GameProtocolError, match=message):
        parse_reply(frame)


def test_doctype_rejected():
    frame = b'<!DOCTYPE OK [<!ENTITY x "expanded">]><OK v="&x;"/>'

    with pytest.raises(GameProtocolError, match="DOCTYPE"):
        parse_reply(frame)


def test_lowercase_doctype_rejected():
    with pytest.raises(GameProtocolError):
        parse_reply(b"<!doctype OK><OK/>")


def test_entity_expansion_rejected():
    frame = (
        b'<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">]>'
        b"<ERROR>&lol2;</ERROR>"
    )

    with pytest.raises(GameProtocolError, match="DOCTYPE"):
        parse_reply(frame)


def test_external_entity_rejected():
    frame = b'<!DOCTYPE OK [<!ENTITY x SYSTEM "file:///etc/passwd">]><OK>&x;</OK>'

    with pytest.raises(GameProtocolError, match="DOCTYPE"):
        parse_reply(frame)


def test_size_bound():
    frame = b'<OK pad="' + b"x" * 100 + b'"/>'

    with pytest.raises(GameProtocolError, match="over the 50-byte limit"):
        parse_reply(frame, max_bytes=50)


def test_error_preview_is_short():
    with pytest.raises(GameProtocolError) as caught:
        parse_reply(b"garbage " * 1000)
    assert len(str(caught.value)) < 300
