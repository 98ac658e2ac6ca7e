"""`POST /v1/contacts/import` takes the file as `curl -F file=@PATH` sends it (a
multipart/form-data body, the filename deciding CSV or vCard), and refuses with 415 a
Content-Type it does not read, rather than reading the body as a CSV file. Against a
real `outbox serve`."""

from __future__ import annotations

import pytest

from tests.processes import OutboxProcess

BOUNDARY = "------------------------b16b58e126e0141f"


def curl_form(filename: str, content: bytes) -> tuple[bytes, dict[str, str]]:
    """The body and Content-Type curl 7.88 sends for `-F file=@FILENAME` (captured from
    it): every part typed application/octet-stream, whatever the file is."""
    body = (f"--{BOUNDARY}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode() + content + (
            f"\r\n--{BOUNDARY}--\r\n").encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def addresses(server: OutboxProcess, prefix: str) -> list[str]:
    with server.client() as client:
        found = client.get("/v1/contacts/suggest", params={"q": prefix}).json()
    return sorted(s["address"] for s in found["suggestions"])


def test_a_csv_file_sent_as_a_form(server: OutboxProcess) -> None:
    body, headers = curl_form("people.csv", b"Name,Email\nAnn Form,ann.form@example.test\n")
    with server.client() as client:
        response = client.post("/v1/contacts/import", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert (response.json()["added"], response.json()["applied"]) == (1, True)
    assert addresses(server, "ann.form") == ["ann.form@example.test"]


def test_a_vcard_file_sent_as_a_form_is_read_as_vcard_by_its_name(
        server: OutboxProcess) -> None:
    """Even with ?format=csv: the file's own name says what it is."""
    cards = (b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Bob Form\r\nEMAIL:bob.form@example.test\r\n"
             b"END:VCARD\r\nBEGIN:VCARD\r\nVERSION:3.0\r\nFN:Cy Form\r\n"
             b"EMAIL:cy.form@example.test\r\nEND:VCARD\r\n")
    body, headers = curl_form("Phone Export.VCF", cards)
    with server.client() as client:
        response = client.post("/v1/contacts/import", params={"format": "csv"}, content=body,
                               headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["added"] == 2
    assert addresses(server, "bob.form") == ["bob.form@example.test"]
    assert addresses(server, "cy.form") == ["cy.form@example.test"]


def test_a_form_without_a_file_is_told_how_to_send_it(server: OutboxProcess) -> None:
    body = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n"
            f"--{BOUNDARY}--\r\n").encode()
    with server.client() as client:
        response = client.post("/v1/contacts/import", content=body, headers={
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert response.status_code == 400, response.text
    assert "field 'file'" in response.json()["error"]["message"]


@pytest.mark.parametrize("content_type", [
    "application/x-www-form-urlencoded",  # what `curl --data-binary @FILE` sends
    "text/plain", "application/json", "application/octet-stream"])
def test_another_content_type_is_415_naming_the_accepted_ones(server: OutboxProcess,
                                                              content_type: str) -> None:
    csv = b"Name,Email\nDee Refused,dee.refused@example.test\n"
    with server.client() as client:
        response = client.post("/v1/contacts/import", content=csv,
                               headers={"Content-Type": content_type})
    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("unsupported_media_type", "Content-Type")
    for accepted in ("text/csv", "text/vcard", "multipart/form-data", "curl -F file=@"):
        assert accepted in error["message"], error["message"]
    assert addresses(server, "dee.refused") == []


def test_the_raw_file_still_imports(server: OutboxProcess) -> None:
    with server.client() as client:
        response = client.post("/v1/contacts/import",
                               content=b"Name,Email\nEve Raw,eve.raw@example.test\n",
                               headers={"Content-Type": "text/csv; charset=utf-8"})
    assert response.status_code == 200, response.text
    assert addresses(server, "eve.raw") == ["eve.raw@example.test"]


@pytest.mark.parametrize(("part_type", "query"), [
    ("text/vcard", {}), ("application/octet-stream", {"format": "vcard"})])
def test_a_file_named_without_extension_goes_by_its_type_then_format(
        server: OutboxProcess, part_type: str, query: dict[str, str]) -> None:
    """Cards after a first line that is no card: what the content looks like would say
    CSV, so the part's Content-Type or ?format= decided."""
    local = f"fay.{part_type.split('/')[1]}"
    cards = (f"exported by a phone\r\nBEGIN:VCARD\r\nVERSION:3.0\r\nFN:Fay\r\n"
             f"EMAIL:{local}@example.test\r\nEND:VCARD\r\n").encode()
    body, headers = curl_form("export", cards)
    body = body.replace(b"application/octet-stream", part_type.encode(), 1)
    with server.client() as client:
        response = client.post("/v1/contacts/import", params=query, content=body,
                               headers=headers)
    assert response.status_code == 200, response.text
    assert addresses(server, local) == [f"{local}@example.test"]
