"""C/C++ names: symbol prefixes, namespaces, section names, include guards.

Every name that ends up in generated source goes through here, so a bad one fails before
any file is written, with :class:`~toolchain.errors.UsageError` saying what is allowed.
"""

from __future__ import annotations

import re

from toolchain.errors import UsageError

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SECTION = re.compile(r"[A-Za-z0-9_.$]{1,128}\Z")  # a comma would split the .section directive

#: C and C++ keywords (and alternative tokens): not usable as a namespace name.
KEYWORDS = frozenset(
    [
        "alignas",
        "alignof",
        "and",
        "and_eq",
        "asm",
        "auto",
        "bitand",
        "bitor",
        "bool",
        "break",
        "case",
        "catch",
        "char",
        "char8_t",
        "char16_t",
        "char32_t",
        "class",
        "compl",
        "concept",
        "const",
        "consteval",
        "constexpr",
        "constinit",
        "const_cast",
        "continue",
        "co_await",
        "co_return",
        "co_yield",
        "decltype",
        "default",
        "delete",
        "do",
        "double",
        "dynamic_cast",
        "else",
        "enum",
        "explicit",
        "export",
        "extern",
        "false",
        "float",
        "for",
        "friend",
        "goto",
        "if",
        "inline",
        "int",
        "long",
        "mutable",
        "namespace",
        "new",
        "noexcept",
        "not",
        "not_eq",
        "nullptr",
        "operator",
        "or",
        "or_eq",
        "private",
        "protected",
        "public",
        "register",
        "reinterpret_cast",
        "requires",
        "restrict",
        "return",
        "short",
        "signed",
        "sizeof",
        "static",
        "static_assert",
        "static_cast",
        "struct",
        "switch",
        "template",
        "this",
        "thread_local",
        "throw",
        "true",
        "try",
        "typedef",
        "typeid",
        "typename",
        "union",
        "unsigned",
        "using",
        "virtual",
        "void",
        "volatile",
        "wchar_t",
        "while",
        "xor",
        "xor_eq",
        "_Alignas",
        "_Alignof",
        "_Atomic",
        "_Bool",
        "_Complex",
        "_Generic",
        "_Imaginary",
        "_Noreturn",
        "_Static_assert",
        "_Thread_local",
    ]
)


def check_identifier(name: str, *, what: str = "symbol name") -> str:
    """Return ``name`` when it is a usable C/C++ identifier, else raise UsageError.

    Rejected: anything but letters, digits and ``_``; a leading digit; keywords; ``__``
    anywhere or a leading ``_`` + capital (reserved for the compiler).
    """
    why = None
    if not _IDENT.match(name):
        why = "use letters, digits and '_' only, not starting with a digit"
    elif name in KEYWORDS:
        why = "it is a C/C++ keyword"
    elif "__" in name or re.match(r"_[A-Z]", name):
        why = "names with '__' or starting with '_' + a capital are reserved for the compiler"
    if why:
        raise UsageError(f"{what} {name!r} is not a valid C identifier", hint=why)
    return name


def sanitize(stem: str) -> str:
    """A valid identifier derived from a file stem (``person-detect.v2`` → ``person_detect_v2``)."""
    s = re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_")
    s = re.sub(r"_{2,}", "_", s)
    if not s:
        return "model"
    if s[0].isdigit():
        s = "model_" + s
    return s if s not in KEYWORDS else s + "_model"


def camel(name: str) -> str:
    """``person_detect`` → ``PersonDetect`` (for type and constant names)."""
    out = "".join(p[:1].upper() + p[1:] for p in name.split("_") if p)
    return out or "Model"


def check_namespace(ns: str) -> tuple[str, ...]:
    """``"a::b"`` → ``("a", "b")``; each part must be an identifier and not a keyword."""
    parts = tuple(ns.split("::"))
    for p in parts:
        check_identifier(p, what="namespace")
    return parts


def check_section(section: str) -> str:
    """A linker section name (``.rodata.model``): letters, digits, ``_ . $`` only (GCC writes
    it unquoted into ``.section NAME,"a"``: a comma or space would not assemble)."""
    if not _SECTION.match(section):
        raise UsageError(
            f"section name {section!r} is not a valid linker section name",
            hint="use letters, digits and '_', '.', '$' (e.g. .rodata.model or .model_flash)",
        )
    return section


def guard(filename: str) -> str:
    """Include guard for a generated header: ``person_detect_model_data.h`` → ``PERSON_DETECT_MODEL_DATA_H_``."""
    return re.sub(r"[^A-Za-z0-9]", "_", filename).upper() + "_"
