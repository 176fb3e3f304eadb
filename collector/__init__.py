"""The privileged half: load BPF, attach, drain, batch, publish. Never parses."""
