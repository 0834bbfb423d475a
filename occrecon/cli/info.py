"""``occrecon info``: how the compiled extension was built."""
from __future__ import annotations

import argparse
import json

__all__ = ["register"]


def _info(_args: argparse.Namespace) -> int:
    import occrecon

    print(json.dumps(occrecon.build_info(), indent=2))
    return 0



def register(sub) -> None:
    p = sub.add_parser("info", help="how the compiled extension was built")
    p.set_defaults(func=_info)
