"""mkdocs hook: the committed results (reports, plots, tables) are pages and files of the site,
served from results/ where the commands wrote them, so the docs link to them and include them
without a copy."""

from pathlib import Path

from mkdocs.structure.files import File

REPO = Path(__file__).resolve().parent.parent
KINDS = (".md", ".png", ".csv", ".json")


def on_files(files, config):
    for path in sorted((REPO / "results").rglob("*")):
        if path.is_file() and path.suffix in KINDS:
            files.append(File(str(path.relative_to(REPO)), src_dir=str(REPO), dest_dir=config["site_dir"],
                              use_directory_urls=config["use_directory_urls"]))
    return files


def on_page_markdown(markdown, page, config, files):
    """The front page: README.md, its ``docs/`` links made relative to the site."""
    if page.file.src_uri == "index.md":
        return (REPO / "README.md").read_text(encoding="utf-8").replace("](docs/", "](")
    return markdown
