"""``python -m xssr``: the command line, also as ``torchrun --nproc_per_node=N -m xssr ...``."""

from xssr.cli import main

if __name__ == "__main__":
    main(prog_name="xssr")
