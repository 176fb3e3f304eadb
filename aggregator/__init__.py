"""The unprivileged half: decode ▸ streams ▸ http1 ▸ s3 ▸ correlate ▸ outputs."""
