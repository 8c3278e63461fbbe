"""Message builders: exact output, escaping and rejection of control characters."""

import pytest
from lxml import etree

from services.game import messages
from services.game.framing import encode_frame
from services.game.password import transform_password


HASH = transform_password("mypass123")

INJECTIONS = [
    '"/><ADDUSER l="x',
    "a & b",
    "it's",
    'say "hi"',
    "<script>",
    "x' p='0",
    "&amp;&#0;",
]


def parse(text):
    return etree.fromstring(text, etree.XMLParser(resolve_entities=False, no_network=True))


def test_adduser_exact():
    assert messages.adduser("Player", HASH, 1) == f'<ADDUSER l="Player" p="{HASH}" g="1" m="test@test.ru"/>'


@pytest.mark.parametrize("login", INJECTIONS)
def test_adduser_injection_stays_in_attribute(login):
    text = messages.adduser(login, HASH, 0)
    element = parse(text)

    assert element.tag == "ADDUSER"
    assert len(element) == 0
    assert element.get("l") == login
    assert element.get("p") == HASH
    assert sorted(element.attrib) == ["g", "l", "m", "p"]
    assert text.count("<") == 1


@pytest.mark.parametrize("login", INJECTIONS)
def test_newpas_injection_stays_in_attribute(login):
    element = parse(messages.newpas(login, HASH))

    assert element.tag == "NEWPAS"
    assert element.get("l") == login
    assert sorted(element.attrib) == ["l", "pwd2"]


def test_escape_all_five_characters():
    assert messages.escape_attribute("l", "&<>\"'") == "&amp;&lt;&gt;&quot;&apos;"


@pytest.mark.parametrize("character", ["\x00", "\n", "\r", "\t", "\x1f", "\x7f", "\x01"])
def test_control_character_rejected(character):
    login = f"bad{character}login"

    with pytest.raises(ValueError) as caught:
        messages.adduser(login, HASH, 1)
    assert "'l'" in str(caught.value)
    assert f"U+{ord(character):04X}" in str(caught.value)
    assert login not in str(caught.value)


def test_control_character_rejected_in_email():
    with pytest.raises(ValueError, match="'m'"):
        messages.adduser("Player", HASH, 1, email="a@b.c\x00<X/>")


def test_nul_cannot_reach_frame():
    """Whatever the login, the encoded frame has exactly one NUL, at its end."""
    for login in INJECTIONS:
        data = encode_frame(messages.adduser(login, HASH, 1))
        assert data.index(b"\x00") == len(data) - 1


def test_cyrillic_login_kept():
    assert 'l="Странник Ёж"' in messages.adduser("Странник Ёж", HASH, 1)


@pytest.mark.parametrize("value", ["", "abc", HASH.lower(), HASH + "0", "mypass123"])
def test_password_hash_shape_checked(value):
    with pytest.raises(ValueError, match="40 uppercase hexadecimal") as caught:
        messages.adduser("Player", value, 1)
    if value:
        assert value not in str(caught.value)


@pytest.mark.parametrize("gender", [2, -1, "1", True, None])
def test_gender_checked(gender):
    with pytest.raises(ValueError, match="gender"):
        messages.adduser("Player", HASH, gender)


def test_login_required():
    with pytest.raises(ValueError, match="login"):
        messages.adduser("", HASH, 1)


def test_newpas_exact():
    assert messages.newpas("Player", HASH) == f'<NEWPAS l="Player" pwd2="{HASH}"/>'


def test_login_exact_with_defaults():
    assert messages.login("bot1", HASH) == (
        f'<LOGIN v3="10.20.30.40" lang="ru" v2="4875537" v="108" p="{HASH}" l="bot1"/>'
    )


def test_login_identity_configurable():
    identity = messages.ClientIdentity(version="109", build="1", address="127.0.0.1", lang="en")
    element = parse(messages.login("bot1", HASH, identity))

    assert element.get("v") == "109"
    assert element.get("v2") == "1"
    assert element.get("v3") == "127.0.0.1"
    assert element.get("lang") == "en"


def test_simple_commands_exact():
    assert messages.getme() == "<GETME/>"
    assert messages.keepalive() == "<N/>"
    assert messages.getmybattle() == "<GETMYBATTLE/>"


def test_blook_exact():
    assert messages.blook(4100001) == '<POST t="//blook 4100001"/>'


@pytest.mark.parametrize("battle_id", [0, -5, "4100001", 1.5, True])
def test_blook_rejects_bad_id(battle_id):
    with pytest.raises(ValueError, match="battle_id"):
        messages.blook(battle_id)


def test_shop_page_exact():
    assert messages.shop_page("a", "", 0) == '<SH c="a" s="" p="0"/>'
    assert messages.shop_page("a", "name:zz-a9,type:2.5", 3) == '<SH c="a" s="name:zz-a9,type:2.5" p="3"/>'


@pytest.mark.parametrize(
    "arguments, name",
    [(("", "", 0), "category"), (("a", "", -1), "page"), (("a", "", "1"), "page"), (("a", None, 0), "filter_text")],
)
def test_shop_page_checks(arguments, name):
    with pytest.raises(ValueError, match=name):
        messages.shop_page(*arguments)


def test_shop_filter_injection_escaped():
    element = parse(messages.shop_page("a", '"/><GETME/>', 0))

    assert element.get("s") == '"/><GETME/>'
    assert len(element) == 0


@pytest.mark.parametrize("tag", ["", "1A", "A B", "A/>", "<A", "A\n"])
def test_build_element_rejects_bad_tag(tag):
    with pytest.raises(ValueError, match="element name"):
        messages.build_element(tag)


def test_build_element_rejects_bad_attribute_name():
    with pytest.raises(ValueError, match="attribute name"):
        messages.build_element("A", {'x="1" y': "2"})
    with pytest.raises(ValueError, match="attribute name"):
        messages.build_element("A", {"x\n": "2"})
