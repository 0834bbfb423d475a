"""Command line: ``occrecon demo`` and ``occrecon info``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_neighbour_demo

    res = run_neighbour_demo(Path(args.out), image=Path(args.image) if args.image else None,
                             points=Path(args.points) if args.points else None)
    print(f"neighbourhood-min demo on {res['image']}")
    print("  render = photo shifted by (2, -3) px with sunglasses pasted over the eyes")
    print("   k   loss (mean d^2)   mean d visible   mean d occluder")
    for k in (1, 3, 5):
        print(f"   {k}   {res[f'loss_k{k}']:14.5f}   {res[f'mean_dist_visible_k{k}']:14.4f}"
              f"   {res[f'mean_dist_occluder_k{k}']:15.4f}")
    print(f"wrote {res['png']}  (target | render | distance k=1 | distance k=5)")
    return 0


def _info(_args: argparse.Namespace) -> int:
    import occrecon

    print(json.dumps(occrecon.build_info(), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="occrecon", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="neighbourhood-min loss on a real face photo, writes a PNG")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--image", help="a face photo (default: the first development face in the shared assets)")
    p.add_argument("--points", help="its 5-point detection file: 'x y' per line (eyes, nose, mouth corners)")
    p.set_defaults(func=_demo)
    p = sub.add_parser("info", help="how the compiled extension was built")
    p.set_defaults(func=_info)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
