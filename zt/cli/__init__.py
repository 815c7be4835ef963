"""Command-line entry points: each `main(argv=None) -> int`, testable in-process."""
