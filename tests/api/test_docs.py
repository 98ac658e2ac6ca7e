"""`/docs` and `/redoc` work offline (SPEC §2: served without any CDN): every script,
style sheet and icon they load comes from this server, and the files are package data."""

from __future__ import annotations

import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from tests.processes import TLS, OutboxProcess

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ["swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon-32x32.png"]


class Links(HTMLParser):
    """Every URL a page makes the browser load: script src, link href, img src."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        self.urls += [value for name, value in attrs if name == wanted and value]


def loaded_urls(html: str) -> list[str]:
    parser = Links()
    parser.feed(html)
    # URLs the inline script hands to the viewer (Swagger UI's `url: '/openapi.json'`).
    parser.urls += re.findall(r"""(?:url|spec-url)\s*[:=]\s*['"]([^'"]+)['"]""", html)
    return parser.urls


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_documentation_pages_load_only_local_files(server: OutboxProcess, page: str) -> None:
    with httpx.Client(base_url=server.base_url, timeout=30, verify=TLS) as client:
        response = client.get(page)
        assert response.status_code == 200, response.text
        assert "text/html" in response.headers["content-type"]
        urls = loaded_urls(response.text)
        assert any(u.endswith(".js") for u in urls), urls
        assert "/openapi.json" in urls, urls
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", response.text,
                             re.IGNORECASE), "an absolute URL is left in the page"
        for url in urls:
            assert url.startswith("/") and not url.startswith("//"), url
            loaded = client.get(url)
            assert loaded.status_code == 200, (url, loaded.status_code)
            assert len(loaded.content) > 0, url


def test_documentation_assets_are_package_data(tmp_path: Path) -> None:
    """`build_py` is the step of a wheel build that picks the package data from
    pyproject's [tool.setuptools.package-data]: the vendored files must be in it."""
    subprocess.run([sys.executable, "-c", "import setuptools; setuptools.setup()", "-q",
                    "egg_info", "--egg-base", str(tmp_path), "build_py",
                    "--build-lib", str(tmp_path / "lib")],
                   cwd=ROOT, check=True, capture_output=True, timeout=120)
    shipped = tmp_path / "lib" / "outbox" / "api" / "static"
    for name in ASSETS:
        assert (shipped / name).stat().st_size > 0, name
