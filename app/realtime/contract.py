"""The WebSocket frames as a Markdown table, written from the msgspec Structs in `frames`
(`python -m app.realtime.contract`): README carries the output and a test keeps the two
equal, so the documented frames are the ones the server decodes and encodes."""

from __future__ import annotations

import typing

import msgspec
import msgspec.inspect as mi

from app.realtime import frames


def _type(t: mi.Type) -> str:
    if isinstance(t, mi.UnionType):
        return " \\| ".join(_type(member) for member in t.types)
    if isinstance(t, mi.IntType):
        return "int"
    if isinstance(t, mi.FloatType):
        return "number"
    if isinstance(t, mi.StrType):
        return "string"
    if isinstance(t, mi.BoolType):
        return "bool"
    if isinstance(t, mi.NoneType):
        return "null"
    if isinstance(t, mi.LiteralType):
        return " \\| ".join(f'"{value}"' for value in t.values)
    if isinstance(t, mi.ListType):
        return f"[{_type(t.item_type)}]"
    if isinstance(t, mi.StructType):
        return "{" + ", ".join(_field(f) for f in t.fields) + "}"
    raise TypeError(f"no wording for {t!r}")


def _field(f: mi.Field) -> str:
    return f"{f.encode_name}{'' if f.required else '?'}: {_type(f.type)}"


def _row(direction: str, cls: type[msgspec.Struct]) -> str:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    fields = ", ".join(f"`{_field(f)}`" for f in info.fields)
    doc = " ".join((cls.__doc__ or "").split()) if cls.__doc__ else ""
    return f"| {direction} | `{info.tag}` | {fields or '-'} | {doc} |"


def server_frames() -> list[type[msgspec.Struct]]:
    """Every frame the server sends: the two snapshot shapes, then the live frames."""
    return [frames.Snapshot, frames.RleSnapshot, *typing.get_args(frames.LiveFrame)]


def markdown_table() -> str:
    rows = ["| from | `type` | fields (`?`: may be absent) | meaning |", "|---|---|---|---|"]
    rows += [_row("client", cls) for cls in typing.get_args(frames.ClientFrame)]
    rows += [_row("server", cls) for cls in server_frames()]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
