"""Generated from proto/nexxus/v1 by scripts/generate.py. Do not edit."""
