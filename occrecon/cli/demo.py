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
    from ..demo import run_reconstruction_demo

    fit = None if args.fit == "none" else args.fit
    res = run_reconstruction_demo(Path(args.out), checkpoint=Path(args.checkpoint) if args.checkpoint else None,
                                  fit=fit, trusted=args.trusted)
    print(f"occlusion-robust reconstruction of the development faces and the astronaut ({res['checkpoint']})")
    print("  each face as it is, and with random occluders pasted on (exact ground-truth mask); the bundled encoder"
          + (f" alone, then refined by the fitting engine ('{fit}')" if fit else ""))
    print("  share = occluded share of Φ (clean / occluded photo); F1 of the mask vs the truth on the occluded photo,")
    print("  beside the F1 of 'all of its Φ is face' (each method has its own Φ);")
    print("  lm = landmark error on the clean photo / inter-ocular distance")
    head = f"  {'face':12s} {'encoder: share':>15s} {'F1':>6s} {'all-Φ F1':>8s} {'lm':>6s}"
    if fit:
        head += f"   {'fit: share':>12s} {'F1':>6s} {'lm':>6s}   {'all-Φ F1':>8s}"
    print(head)

    def line(name, r, mean=False):
        key = (lambda k: f"mean_{k}") if mean else (lambda k: k)
        text = (f"  {name:12s} {r[key('fraction_clean') if mean else 'occlusion_fraction_clean']:7.3f}/"
                f"{r[key('fraction_occluded') if mean else 'occlusion_fraction_occluded']:.3f}"
                f" {r[key('f1_occluded')]:6.3f} {r[key('f1_all_visible')]:8.3f} {r[key('landmark_error')]:6.3f}")
        if fit:
            p = "fit_mean_" if mean else "fit_"
            text += (f"   {r[p + ('fraction_clean' if mean else 'occlusion_fraction_clean')]:5.3f}/"
                     f"{r[p + ('fraction_occluded' if mean else 'occlusion_fraction_occluded')]:.3f}"
                     f" {r[p + 'f1_occluded']:6.3f} {r[p + 'landmark_error']:6.3f}   {r[p + 'f1_all_visible']:8.3f}")
        print(text)

    for f in res["faces"]:
        line(f["face"][:12], f)
    line("mean", res, mean=True)
    print(f"wrote {res['png']}  (per face: target | encoder render | encoder mask"
          + (" | fitted render | fitted mask" if fit else "") + ", clean then occluded; red = rejected by the mask)")


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
