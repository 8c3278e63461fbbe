"""Parsing of the frames the game server sends.

A frame contains one XML element. ``<OK .../>`` reports success,
``<ERR .../>`` and ``<ERROR .../>`` report a failure, and any other element
(``MYPARAM``, ``BLOOK``, ``SH``, ``KEY``, ...) is returned as it is. The
parser loads no DTD, resolves no entities beyond the five predefined ones,
never uses the network and rejects any DOCTYPE, so a frame cannot expand
into more than its own bytes.

NOTE: the game's XML may deviate from the standard in places (duplicate
attributes have been reported in some packet types). Such frames raise
:class:`GameProtocolError` here.
"""

from dataclasses import dataclass, field

from lxml import etree

from services.game.framing import DEFAULT_ENCODING, DEFAULT_MAX_FRAME_BYTES, GameProtocolError, check_encoding


OK_TAG = "OK"
ERROR_TAGS = ("ERR", "ERROR")

# Attributes that carry an error's text, in the order they are looked for.
_MESSAGE_ATTRIBUTES = ("msg", "m", "message", "text")
# Earlier clients of this game server delete 0x1F bytes from every reply.
# What the byte means is not known; it is illegal in XML 1.0.
_STRIPPED = "\x1f"
_PREVIEW_CHARS = 60


@dataclass(frozen=True)
class Reply:
    """One parsed frame from the game server.

    ``kind`` is ``"ok"``, ``"error"`` or ``"other"``. ``code`` and
    ``message`` are set for errors only. ``raw`` is the frame as received,
    without its NUL.
    """

    kind: str
    tag: str
    attributes: dict = field(default_factory=dict)
    code: str | None = None
    message: str | None = None
    text: str = ""
    raw: bytes = b""
    element: etree._Element | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.kind == "ok"

    @property
    def is_error(self) -> bool:
        return self.kind == "error"

    def get(self, name: str, default: str | None = None) -> str | None:
        """Return the attribute ``name``, or ``default`` when it is absent."""
        return self.attributes.get(name, default)


def _make_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        load_dtd=False,
        dtd_validation=False,
        no_network=True,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def parse_reply(
    frame: bytes,
    encoding: str = DEFAULT_ENCODING,
    max_bytes: int = DEFAULT_MAX_FRAME_BYTES,
) -> Reply:
    """Parse one frame (without its NUL) into a :class:`Reply`.

    Raises :class:`GameProtocolError` when the frame is empty, too large,
    not valid text in ``encoding``, not one well-formed element, or carries
    a DOCTYPE.
    """
    encoding = check_encoding(encoding)
    if len(frame) > max_bytes:
        raise GameProtocolError(f"the reply has {len(frame)} bytes, over the {max_bytes}-byte limit")
    try:
        text = frame.decode(encoding)
    except UnicodeDecodeError as error:
        raise GameProtocolError(
            f"the reply is not valid {encoding} (byte {error.start}): {_preview(frame)}"
        ) from None
    text = text.replace(_STRIPPED, "").strip()
    if not text:
        raise GameProtocolError("the reply is empty")
    if "<!DOCTYPE" in text.upper():
        raise GameProtocolError(f"the reply contains a DOCTYPE, which the game protocol never uses: {_preview(frame)}")

    # A fresh parser per call: lxml parsers keep state and must not be
    # shared between threads.
    try:
        element = etree.fromstring(text, _make_parser())
    except etree.XMLSyntaxError as error:
        raise GameProtocolError(f"the reply is not well-formed XML ({error}): {_preview(frame)}") from None
    except ValueError:
        # lxml rejects text input that starts with an encoding declaration.
        raise GameProtocolError(f"the reply starts with an XML encoding declaration: {_preview(frame)}") from None
    if element.getroottree().docinfo.doctype:
        raise GameProtocolError(f"the reply contains a DOCTYPE, which the game protocol never uses: {_preview(frame)}")
    if not isinstance(element.tag, str):
        raise GameProtocolError(f"the reply is not an element: {_preview(frame)}")

    tag = element.tag
    attributes = dict(element.attrib)
    element_text = (element.text or "").strip()
    if tag == OK_TAG:
        return Reply("ok", tag, attributes, text=element_text, raw=frame, element=element)
    if tag in ERROR_TAGS:
        message = next((attributes[name] for name in _MESSAGE_ATTRIBUTES if name in attributes), None)
        return Reply(
            "error",
            tag,
            attributes,
            code=attributes.get("code"),
            message=message if message is not None else (element_text or None),
            text=element_text,
            raw=frame,
            element=element,
        )
    return Reply("other", tag, attributes, text=element_text, raw=frame, element=element)


def _preview(frame: bytes) -> str:
    """Return the start of a frame for an error message, with non-printable bytes escaped."""
    head = frame[:_PREVIEW_CHARS]
    suffix = "..." if len(frame) > _PREVIEW_CHARS else ""
    return repr(head) + suffix
