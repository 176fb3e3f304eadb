"""Build the aggregator's outputs (sinks) from its options."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Optional, TextIO

from s3slower.aggregator.pipeline import PipelineStats
from s3slower.aggregator.records import Record

OUTPUTS = ("table", "simple", "json", "none")


@dataclass(frozen=True)
class OutputOptions:
    output: str = "table"
    max_url_length: int = 50
    log_dir: Optional[str] = None          # None: no log file
    log_max_size_mb: int = 100
    log_max_backups: int = 5
    prometheus: bool = False
    prom_host: str = "::"
    prom_port: int = 9000
    extra_label_keys: tuple[str, ...] = ()
    max_buckets: int = 1000
    interval_s: float = 5.0


class JsonLinesSink:
    def __init__(self, stream: TextIO = sys.stdout):
        self.stream = stream

    def emit(self, rec: Record) -> None:
        self.stream.write(json.dumps(rec.to_json_dict(), separators=(",", ":")) + "\n")
        self.stream.flush()

    def tick(self, stats: PipelineStats, now_wall_ns: int) -> None:
        pass

    def close(self) -> None:
        self.stream.flush()


def build_sinks(opts: OutputOptions) -> list:
    sinks: list = []
    if opts.output == "json":
        sinks.append(JsonLinesSink())
    return sinks
