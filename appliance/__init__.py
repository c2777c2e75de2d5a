"""A containerised, reproducible reduction appliance for JWST imaging data."""

__version__ = "0.1.0"
