"""BPF C sources, shipped as package data."""
from pathlib import Path

DIR = Path(__file__).resolve().parent
PROGRAM = DIR / "s3slower.bpf.c"
HEADER = DIR / "s3slower.h"
