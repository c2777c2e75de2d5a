#!/usr/bin/env python3
"""Entry point of the reduction appliance: ``python run.py RECIPE.toml`` or ``python run.py COMMAND ...``."""
import sys

from appliance.cli import main

if __name__ == "__main__":
    sys.exit(main())
