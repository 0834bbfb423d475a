"""``occrecon demo``: the reconstruction demo on real faces (:mod:`occrecon.demo`) and the neighbourhood-min loss
demo."""
from __future__ import annotations

import argparse
from pathlib import Path

from . import add_trusted_flag

__all__ = ["register"]


def _demo_neighbour(args: argparse.Namespace) -> None:
    from ..demo import run_neighbour_demo

    res = run_neighbour_demo(Path(args.out), image=Path(args.image) if args.image else None,
                             points=Path(args.points) if args.points else None)
    print(f"neighbourhood-min demo on {res['image']}")
    print("  render = photo shifted by (2, -3) px with sunglasses pasted over the eyes")
    print("   k   loss (mean d^2)   mean d visible   mean d occluder")
    for k in (1, 3, 5):
        print(f"   {k}   {res[f'loss_k{k}']:14.5f}   {res[f'mean_dist_visible_k{k}']:14.4f}"
              f"   {res[f'mean_dist_occluder_k{k}']:15.4f}")
    print(f"wrote {res['png']}  (target | render | distance k=1 | distance k=5)")


def _demo_reconstruction(args: argparse.Namespace) -> None:
    from ..demo import format_demo_table, run_reconstruction_demo

    fit = None if args.fit == "none" else args.fit
    res = run_reconstruction_demo(Path(args.out), checkpoint=Path(args.checkpoint) if args.checkpoint else None,
                                  fit=fit, trusted=args.trusted)
    n = len(res["faces"])
    print(f"occlusion-robust reconstruction of {n} real photos no training saw: the development faces and the "
          f"astronaut ({res['checkpoint']})")
    print("  each face as it is, and with random occluders pasted on (exact ground truth); the mean face (θ = 0), the "
          "encoder + UNet alone" + (f", and the encoder refined by the fitting engine ('{fit}')" if fit else ""))
    print("  medians over the faces: lm = landmark error on the clean photo / inter-ocular distance; RMSE = visible-"
          "skin error (0-255) on the clean photo; kept = Σ M / Σ Φ on the clean photo; ACC, F1 of the mask on the "
          "occluded photo (where the truth is known), beside 'everything in Φ is face' and the eq. 9 pseudo-mask")
    for line in format_demo_table(res["median"], res["methods"]).splitlines():
        print("  " + line)
    print("  paired over the faces (mean ± standard error):")
    for m, p in res["paired"].items():
        text = ", ".join(f"{k.replace('_vs_', ' − ').replace('all', 'all-Φ')} {v[0]:+.3f} ± {v[1]:.3f}"
                         for k, v in p.items())
        print(f"    {m}: {text}")
    print(f"wrote {res['png']} (the medians on top; per face: target | render | mask of each method, clean then "
          f"occluded; red = rejected by the mask) and {res['json']}")


def _demo(args: argparse.Namespace) -> int:
    if args.what in ("reconstruction", "all"):
        _demo_reconstruction(args)
    if args.what in ("neighbour", "all"):
        _demo_neighbour(args)
    return 0



def register(sub) -> None:
    p = sub.add_parser("demo", help="reconstruct real faces with the bundled checkpoint (and the neighbourhood-min "
                                    "loss demo); writes PNGs")
    p.add_argument("what", nargs="?", choices=["reconstruction", "neighbour", "all"], default="all",
                   help="which demo (default: all)")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--checkpoint", help="reconstruction: a training checkpoint (default: the bundled one)")
    p.add_argument("--fit", choices=["fast", "quality", "none"], default="fast",
                   help="reconstruction: refine the encoder's prediction with the fitting engine (default fast)")
    p.add_argument("--image", help="neighbour: a face photo (default: the first development face)")
    p.add_argument("--points", help="neighbour: its 5-point detection file: 'x y' per line (eyes, nose, mouth corners)")
    add_trusted_flag(p)
    p.set_defaults(func=_demo)
