#!/usr/bin/env python3
"""Entry point of the reduction appliance: ``python run.py RECIPE.toml`` or ``python run.py COMMAND ...``."""
import sys

if __name__ == "__main__":
    # imported here, not at the top: jump and ramp_fit spawn worker processes that import this script again
    # (as __mp_main__), and each would otherwise import the command line it never uses
    from appliance.cli import main

    sys.exit(main())
