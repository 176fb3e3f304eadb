"""s3slower: eBPF tracer of S3 requests as the client sees them."""

__version__ = "0.1.0"
