"""Where tunesmith talks to the user: progress and notes go to stderr, results to stdout."""

from __future__ import annotations

import os

from rich.console import Console, RenderableType

err_console = Console(stderr=True, highlight=False, soft_wrap=True)
out_console = Console(highlight=False, soft_wrap=True)


def say(message: str) -> None:
    """A progress note for the user (stderr, so stdout stays clean for results); silent on ranks other than 0."""
    if os.environ.get("RANK", "0") == "0":
        err_console.print(message, markup=False)


def print_unwrapped(renderable: RenderableType) -> None:
    """Print to stdout as wide as ``renderable`` needs, never folded to the terminal (for --wide listings)."""
    width = int(Console(width=10_000).measure(renderable).maximum)
    Console(highlight=False, width=max(width, out_console.width)).print(renderable)


def quiet_libraries() -> None:
    """Silence library progress bars and info logs; tunesmith reports progress itself."""
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.utils.logging.set_verbosity_error()
