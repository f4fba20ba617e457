"""The HTML report parses and embeds its images; the model card has the hub's front matter."""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path

import yaml

from tunesmith.review.html_report import write_html_report
from tunesmith.track.model_card import write_model_card


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.headings: list[str] = []
        self._in_heading = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs).get("src") or "")
        self._in_heading = tag in ("h1", "h2", "h3")

    def handle_data(self, data: str) -> None:
        if self._in_heading:
            self.headings.append(data)
            self._in_heading = False


def test_report_is_one_html_file_with_embedded_plots(runs_copy: tuple[Path, Path], tmp_path: Path) -> None:
    evaluated = runs_copy[0]
    written = write_html_report(evaluated, tmp_path / "out" / "report.html")
    assert written[0] == tmp_path / "out" / "report.html"
    page = written[0].read_text()
    parser = _Collect()
    parser.feed(page)
    parser.close()
    assert parser.images and all(src.startswith("data:image/png;base64,") for src in parser.images)
    png = base64.b64decode(parser.images[0].removeprefix("data:image/png;base64,"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert {"Metrics", "Curves", "Samples", "Data", "Config", "Doctor's analysis"} <= set(parser.headings)
    assert "tuned" in page and "learning_rate" in page and "tokens per row" in page


def test_model_card_front_matter(runs_copy: tuple[Path, Path]) -> None:
    path = write_model_card(runs_copy[0])
    text = path.read_text()
    assert path == runs_copy[0] / "model" / "README.md" and text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["library_name"] == "peft" and front["license"] == "unknown"
    assert "tunesmith" in front["tags"] and "lora" in front["tags"]
    assert "## Evaluation" in text and "AutoPeftModelForCausalLM" in text
