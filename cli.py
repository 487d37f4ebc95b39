"""``python cli.py fit --config enhanced.yaml``: the command line of :mod:`lightning_rec.cli`, run from a clone."""

from lightning_rec.cli import main

if __name__ == "__main__":
    main()
