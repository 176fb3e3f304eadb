"""The unprivileged half: decode ▸ http1 ▸ correlate (s3ops) ▸ outputs (docs/architecture.md)."""
