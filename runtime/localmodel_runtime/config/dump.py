"""Write YAML that every reader in the chain reads back as the same values.

Manifests we write are read by kubectl (YAML 1.1 rules, where `y`, `n`, `yes`, `off` are booleans),
by our YAML 1.2 loader, and by people. So any string that some YAML version would read as another type
is quoted, and multi-line strings (templates) are written as literal blocks to stay readable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import yaml

# Plain scalars that YAML 1.1 (kubectl, PyYAML) or 1.2 would not read back as the same string.
_AMBIGUOUS = re.compile(
    r"^(?:y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF"
    r"|~|null|Null|NULL|[-+]?(?:\.inf|\.Inf|\.INF)|\.nan|\.NaN|\.NAN"
    r"|[-+]?[0-9][0-9_:.eExXoObB+-]*|=|<<)$"
)


class _Dumper(yaml.SafeDumper):
    """SafeDumper that never lets a string turn into another type on the way back."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value and value.strip("\n") != "" and not any(c in value for c in "\t\r"):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    if _AMBIGUOUS.match(value):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(data: Any) -> str:
    """One YAML document, keys in the order given."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def dump_yaml_documents(documents: Iterable[Any]) -> str:
    """Several documents separated by `---` (a multi-document manifest)."""
    return yaml.dump_all(
        list(documents), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100, explicit_start=True
    )
