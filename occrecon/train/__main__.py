"""``python -m occrecon.train CONFIG.yaml [--resume [CKPT]] [--out DIR]`` (also under ``torchrun``)."""
import sys

from occrecon.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
