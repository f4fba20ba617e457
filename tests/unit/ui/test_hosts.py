"""DNS rebinding and cross-site writes over HTTP: the Host check, the Origin / Referer check, the CSRF token."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fixtures import write_ads_csv
from tunesmith.serve.hosts import allowed_hosts, host_allowed, host_name
from tunesmith.ui.app import UiSettings, create_app

PORT = 7860
HERE = f"http://127.0.0.1:{PORT}"


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    data = tmp_path / "work"
    data.mkdir()
    write_ads_csv(data / "ads.csv")
    return data


def ui(root: Path, host: str = "127.0.0.1", base: str = HERE, token: str | None = None) -> TestClient:
    return TestClient(create_app(UiSettings(root, root / "runs", token=token, host=host)), base_url=base)


def launch_form() -> dict[str, str]:
    return {"name": "t", "task": "causal_lm", "model.name": "nope/none", "data.train": "ads.csv",
            "data.prompt": "{product}", "data.response": "{ad_text}", "train.max_steps": "1"}  # fmt: skip


def csrf_of(page: str) -> str:
    found = re.search(r'X-Tunesmith-Csrf": "([^"]+)"', page)
    assert found, page[:500]
    return found.group(1)


def test_host_names_are_parsed_strictly() -> None:
    assert host_name("127.0.0.1:7860") == "127.0.0.1"
    assert host_name("[::1]:7860") == "::1"
    assert host_name("LocalHost") == "localhost"
    assert host_name("evil.example:7860") == "evil.example"
    assert host_name("127.0.0.1:abc") is None and host_name("") is None and host_name("[zz]:1") is None
    loopback = allowed_hosts("127.0.0.1")
    assert loopback is not None and {"localhost", "127.0.0.1", "::1"} <= loopback
    assert allowed_hosts("0.0.0.0") is None and allowed_hosts("::") is None  # every name: the token guards
    assert host_allowed("box.lan:7860", allowed_hosts("box.lan"))
    assert not host_allowed(None, loopback) and not host_allowed("127.0.0.1.evil.example", loopback)


@pytest.mark.parametrize("host", ["evil.example", f"evil.example:{PORT}", "127.0.0.2", "localhost.evil.example"])
def test_a_foreign_host_header_is_refused(root: Path, host: str) -> None:
    client = ui(root)
    for method, path in (("GET", "/runs"), ("GET", "/runs/table"), ("GET", "/new/table?data.train=ads.csv")):
        response = client.request(method, path, headers={"Host": host})
        assert response.status_code == 400, (path, response.text)
        assert response.json()["error"].startswith(f"Host: {host!r} is not a name of this server")
        assert "ad_text" not in response.text
    launched = client.post("/new/launch", data=launch_form(), headers={"Host": host, "Origin": f"http://{host}"})
    assert launched.status_code == 400
    assert not (root / "runs").exists()


@pytest.mark.parametrize("host", [f"127.0.0.1:{PORT}", f"localhost:{PORT}", f"[::1]:{PORT}", "localhost"])
def test_the_names_of_this_machine_are_answered(root: Path, host: str) -> None:
    assert ui(root).get("/runs", headers={"Host": host}).status_code == 200


def test_the_host_given_is_answered_and_a_wildcard_bind_relies_on_its_token(root: Path) -> None:
    named = ui(root, host="box.lan", base=f"http://box.lan:{PORT}", token="s3cret")
    assert named.get("/runs?token=s3cret").status_code == 200
    assert named.get("/runs?token=s3cret", headers={"Host": "evil.example"}).status_code == 400
    wildcard = ui(root, host="0.0.0.0", base=f"http://10.1.2.3:{PORT}", token="s3cret")
    assert wildcard.get("/runs?token=s3cret", headers={"Host": "anything.lan"}).status_code == 200
    fresh = ui(root, host="0.0.0.0", base=f"http://10.1.2.3:{PORT}", token="s3cret")  # no token cookie yet
    assert fresh.get("/runs", headers={"Host": "anything.lan"}).status_code == 401


@pytest.mark.parametrize(
    "headers",
    [
        {"Referer": "http://evil.example/attack.html"},  # the case: no Origin, a foreign Referer
        {"Origin": "http://evil.example"},
        {"Origin": f"http://evil.example:{PORT}"},
        {"Origin": "null"},  # a foreign page with a no-referrer policy, or a sandboxed frame
        {"Origin": "null", "X-Tunesmith-Csrf": "guessed"},
        {"Origin": "null", "Referer": "http://evil.example/"},
    ],
)
def test_a_foreign_post_is_refused_and_launches_nothing(root: Path, headers: dict[str, str]) -> None:
    client = ui(root)
    client.get("/new")
    response = client.post("/new/launch", data=launch_form(), headers=headers)
    assert response.status_code == 403, response.text
    assert response.json()["error"].startswith("cross-site request refused")
    assert not (root / "runs").exists()


def test_the_pages_own_posts_pass_with_origin_null_too(root: Path) -> None:
    client = ui(root)
    page = client.get("/new")
    assert page.headers["referrer-policy"] == "same-origin"  # so the browser sends its real Origin
    token = csrf_of(page.text)
    assert f'action="/new/config.yaml?csrf={token}"' in page.text
    same = {"Origin": HERE}
    assert (
        client.post("/new/config.yaml", data=launch_form() | {"model.name": "minilm-l6"}, headers=same).status_code
        == 200
    )
    # Chromium sends Origin: null for a page with a no-referrer policy; this page's token still gets through.
    null = client.post(f"/new/config.yaml?csrf={token}", data=launch_form(), headers={"Origin": "null"})
    assert null.status_code == 200 and "max_steps: 1" in null.text
    htmx = client.post("/new/preview", data=launch_form(), headers={"Origin": "null", "X-Tunesmith-Csrf": token})
    assert htmx.status_code == 200
    assert client.post("/new/preview", data=launch_form(), headers={"Referer": f"{HERE}/new"}).status_code == 200
    # Another server start has another token.
    assert (
        ui(root).post(f"/new/config.yaml?csrf={token}", data=launch_form(), headers={"Origin": "null"}).status_code
        == 403
    )


def test_a_script_without_origin_or_referer_may_post(root: Path) -> None:
    # curl and scripts send neither header; a browser page always names itself on a POST.
    assert ui(root).post("/new/preview", data=launch_form()).status_code == 200


def test_every_page_has_a_favicon(root: Path) -> None:
    client = ui(root)
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO file
    assert '<link rel="icon" href="/favicon.ico"' in client.get("/runs").text


def test_serve_refuses_a_foreign_host_when_bound(tmp_path: Path) -> None:
    from tunesmith.serve.app import create_app as serve_app
    from tunesmith.serve.pool import ModelPool

    bound = TestClient(serve_app(ModelPool(routes={}), bind_host="127.0.0.1"), base_url=f"http://127.0.0.1:{PORT}")
    assert bound.get("/v1/models").status_code == 200
    assert bound.get("/v1/models", headers={"Host": f"localhost:{PORT}"}).status_code == 200
    refused = bound.get("/v1/models", headers={"Host": f"evil.example:{PORT}"})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "invalid_host"
    assert refused.json()["error"]["message"].startswith("Host: 'evil.example:7860' is not a name of this server")
