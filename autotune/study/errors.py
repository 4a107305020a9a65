"""A study that cannot start: the message a user sees, and exit code 2 (bad input)."""

from __future__ import annotations

from autotune import secrets

# Exit code for bad input (as argparse uses).
EXIT_CONFIG = 2


class StudyError(Exception):
    """Stops a study before anything is deployed; ``errors`` each name a key and a fix."""

    def __init__(self, title: str, errors: list[str]) -> None:
        super().__init__(f"{title} {'; '.join(errors)}")
        self.title = title
        self.errors = errors


def exit_with(error: StudyError) -> None:
    """Print ``error`` (secrets masked) and exit with :data:`EXIT_CONFIG`."""
    from autotune.tracking.progress import console

    console.print(f"[bold red]{error.title}[/]", highlight=False)
    known = secrets.secret_values()
    for e in error.errors:
        console.print(f"  - {secrets.scrub(e, known)}", highlight=False, markup=False)
    console.print("Nothing was deployed.", highlight=False)
    raise SystemExit(EXIT_CONFIG)
