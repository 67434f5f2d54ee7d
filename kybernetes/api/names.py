"""Name and key validators with apimachinery's messages (util/validation).

Each `is_*` function returns a list of error details (empty = valid), phrased exactly as upstream
so that kubectl users see the messages they know.
"""

from __future__ import annotations

import ipaddress
import re

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
DNS1035_LABEL_MAX = 63
QUALIFIED_NAME_MAX = 63
LABEL_VALUE_MAX = 63

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = _DNS1123_LABEL + r"(\." + _DNS1123_LABEL + r")*"
_DNS1035_LABEL = r"[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = r"(" + _QUALIFIED_NAME + r")?"
_CONFIG_KEY = r"[-._a-zA-Z0-9]+"
_C_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_IANA_SVC_NAME = r"[-a-z0-9]+"
_HAS_LETTER = re.compile(r"[a-z]")

_m = {p: re.compile(p) for p in (_DNS1123_LABEL, _DNS1123_SUBDOMAIN, _DNS1035_LABEL,
                                 _QUALIFIED_NAME, _LABEL_VALUE, _CONFIG_KEY, _C_IDENTIFIER,
                                 _IANA_SVC_NAME)}


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """Upstream's RegexError: examples joined the same (double-spaced) way."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    return msg + " (e.g. " + " or ".join(f"'{e}', " for e in examples) + \
        f"regex used for validation is '{fmt}')"


def max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


def _full(pattern: str, value: str) -> bool:
    return _m[pattern].fullmatch(value) is not None


# The checks every write runs, bound once (the _m lookup showed per label and name).
_dns1123_label = _m[_DNS1123_LABEL].fullmatch
_dns1123_subdomain = _m[_DNS1123_SUBDOMAIN].fullmatch
_qualified_name = _m[_QUALIFIED_NAME].fullmatch
_label_value = _m[_LABEL_VALUE].fullmatch

# Label keys and values, annotation keys: each workload's pods repeat the same few, so the
# ones found valid are remembered (bounded; a valid value always has no errors).
_valid_qualified: set[str] = set()
_valid_label_values: set[str] = set()
_VALID_MAX = 4096


def _remember(valid: set[str], value: str) -> None:
    if len(valid) >= _VALID_MAX:
        valid.clear()
    valid.add(value)


DNS1123_LABEL_ERR = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
                     "or '-', and must start and end with an alphanumeric character")
DNS1123_SUBDOMAIN_ERR = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                         "characters, '-' or '.', and must start and end with an alphanumeric "
                         "character")
DNS1035_LABEL_ERR = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                     "start with an alphabetic character, and end with an alphanumeric character")
QUALIFIED_NAME_ERR = ("must consist of alphanumeric characters, '-', '_' or '.', and must start "
                      "and end with an alphanumeric character")
LABEL_VALUE_ERR = ("a valid label must be an empty string or consist of alphanumeric characters, "
                   "'-', '_' or '.', and must start and end with an alphanumeric character")


def is_dns1123_label(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1123_LABEL_MAX:
        errs.append(max_len_error(DNS1123_LABEL_MAX))
    if _dns1123_label(value) is None:
        errs.append(regex_error(DNS1123_LABEL_ERR, _DNS1123_LABEL, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errs.append(max_len_error(DNS1123_SUBDOMAIN_MAX))
    if _dns1123_subdomain(value) is None:
        errs.append(regex_error(DNS1123_SUBDOMAIN_ERR, _DNS1123_SUBDOMAIN, "example.com"))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1035_LABEL_MAX:
        errs.append(max_len_error(DNS1035_LABEL_MAX))
    if not _full(_DNS1035_LABEL, value):
        errs.append(regex_error(DNS1035_LABEL_ERR, _DNS1035_LABEL, "my-name", "abc-123"))
    return errs


def is_qualified_name(value: str) -> list[str]:
    """Label and annotation keys: an optional DNS subdomain prefix and '/', then a name part."""
    if value in _valid_qualified:
        return []
    errs = _qualified_name_errors(value)
    if not errs:
        _remember(_valid_qualified, value)
    return errs


def _qualified_name_errors(value: str) -> list[str]:
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    else:
        return ["a qualified name " + regex_error(QUALIFIED_NAME_ERR, _QUALIFIED_NAME, "MyName",
                                                  "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > QUALIFIED_NAME_MAX:
        errs.append("name part " + max_len_error(QUALIFIED_NAME_MAX))
    if name and _qualified_name(name) is None:
        errs.append("name part " + regex_error(QUALIFIED_NAME_ERR, _QUALIFIED_NAME, "MyName",
                                               "my.name", "123-abc"))
    return errs


def is_label_value(value: str) -> list[str]:
    if value in _valid_label_values:
        return []
    errs = []
    if len(value) > LABEL_VALUE_MAX:
        errs.append(max_len_error(LABEL_VALUE_MAX))
    if _label_value(value) is None:
        errs.append(regex_error(LABEL_VALUE_ERR, _LABEL_VALUE, "MyValue", "my_value", "12345"))
    if not errs:
        _remember(_valid_label_values, value)
    return errs


def is_config_map_key(value: str) -> list[str]:
    """ConfigMap/Secret data keys (they become file names in volumes)."""
    errs = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errs.append(max_len_error(DNS1123_SUBDOMAIN_MAX))
    if not _full(_CONFIG_KEY, value):
        errs.append(regex_error("a valid config key must consist of alphanumeric characters, "
                                "'-', '_' or '.'", _CONFIG_KEY, "key.name", "KEY_NAME",
                                "key-name"))
    if value == ".":
        errs.append("must not be '.'")
    elif value == "..":
        errs.append("must not be '..'")
    elif value.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def is_env_var_name(value: str) -> list[str]:
    """Env var names as 1.33 checks them (RelaxedEnvironmentVariableValidation is on by default)."""
    if value and all(" " <= c <= "~" and c != "=" for c in value):
        return []
    return ["a valid environment variable name must consist only of printable ASCII characters "
            "other than '='"]


def is_c_identifier(value: str) -> list[str]:
    if _full(_C_IDENTIFIER, value):
        return []
    return [regex_error("a valid C identifier must start with alphabetic character or '_', "
                        "followed by a string of alphanumeric characters or '_'", _C_IDENTIFIER,
                        "my_name", "MY_NAME", "MyName")]


def is_valid_port_num(port: object) -> list[str]:
    if isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535:
        return []
    return ["must be between 1 and 65535, inclusive"]


def is_valid_port_name(name: str) -> list[str]:
    """IANA_SVC_NAME: named container/target ports."""
    errs = []
    if len(name) > 15:
        errs.append("must be no more than 15 characters")
    if not _full(_IANA_SVC_NAME, name):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _HAS_LETTER.search(name):
        errs.append("must contain at least one letter (a-z)")
    if "--" in name:
        errs.append("must not contain consecutive hyphens")
    if name and (name[0] == "-" or name[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def is_valid_ip(value: str) -> list[str]:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return ["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]
    return []


# Per-kind name validators (upstream ValidateXName): the object's metadata.name rules.
def name_is_dns_subdomain(name: str, prefix: bool) -> list[str]:
    return is_dns1123_subdomain(mask_trailing_dash(name) if prefix else name)


def name_is_dns_label(name: str, prefix: bool) -> list[str]:
    return is_dns1123_label(mask_trailing_dash(name) if prefix else name)


def name_is_dns1035_label(name: str, prefix: bool) -> list[str]:
    return is_dns1035_label(mask_trailing_dash(name) if prefix else name)


def path_segment_name(name: str, prefix: bool) -> list[str]:
    """RBAC objects: any name usable as a path segment."""
    if prefix:
        return [f"may not contain '{c}'" for c in ("/", "%") if c in name]
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in name]


def mask_trailing_dash(name: str) -> str:
    """generateName may end in '-': validate it as if the random suffix followed."""
    if len(name) > 1 and name.endswith("-"):
        return name[:-2] + "a"
    return name
