"""The `labkit` command and its instructor-facing sub-commands (up/down/status, doctor, reset, shell)."""
