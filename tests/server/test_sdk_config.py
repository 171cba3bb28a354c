"""GET /sdk/config over 127.0.0.1: gzip when the client accepts it, the same config either way."""

from __future__ import annotations

import gzip

import httpx
import pytest

from ramplight import Client
from ramplight.server.routes.sdk import accepts_gzip
from tests.factories import RunningServer


def get_config(server: RunningServer, key: str, **headers: str) -> httpx.Response:
    # A raw stream, so the body is read as sent (httpx would decode gzip on .content).
    with httpx.Client(base_url=server.url) as http:
        request = http.build_request(
            "GET", "/sdk/config", headers={"Authorization": f"Bearer {key}", **headers}
        )
        response = http.send(request, stream=True)
        response.raw_body = b"".join(response.iter_raw())  # type: ignore[attr-defined]
        response.close()
        return response


def test_the_config_is_gzipped_when_accepted_and_identical_once_decompressed(server: RunningServer) -> None:
    server.create_flag()
    key = server.sdk_key()
    plain = get_config(server, key, **{"Accept-Encoding": "identity"})
    zipped = get_config(server, key, **{"Accept-Encoding": "gzip, deflate"})
    assert plain.status_code == zipped.status_code == 200
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip"
    assert plain.headers["vary"] == zipped.headers["vary"] == "Accept-Encoding"
    assert gzip.decompress(zipped.raw_body) == plain.raw_body  # type: ignore[attr-defined]
    assert len(zipped.raw_body) < len(plain.raw_body)  # type: ignore[attr-defined]
    assert zipped.headers["etag"] != plain.headers["etag"]


def test_a_client_refusing_gzip_gets_the_plain_config(server: RunningServer) -> None:
    server.create_flag()
    response = get_config(server, server.sdk_key(), **{"Accept-Encoding": "gzip;q=0, identity"})
    assert "content-encoding" not in response.headers


def test_either_representations_etag_answers_not_modified(server: RunningServer) -> None:
    server.create_flag()
    key = server.sdk_key()
    plain = get_config(server, key, **{"Accept-Encoding": "identity"})
    zipped = get_config(server, key, **{"Accept-Encoding": "gzip"})
    for etag in (plain.headers["etag"], zipped.headers["etag"]):
        for encoding in ("gzip", "identity"):
            again = get_config(server, key, **{"Accept-Encoding": encoding, "If-None-Match": etag})
            assert again.status_code == 304


def test_the_sdk_receives_the_config_gzipped_and_evaluates_from_it(server: RunningServer) -> None:
    server.create_flag()
    encodings: list[str | None] = []

    class Recording(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = super().handle_request(request)
            if request.url.path == "/sdk/config":
                encodings.append(response.headers.get("content-encoding"))
            return response

    polling = {"transport": Recording(), "poll_interval": 3600, "stream": False}
    with Client(server.sdk_key(), url=server.url, **polling) as client:  # type: ignore[arg-type]
        assert client.ready
        result = client.evaluate("support_assistant_profile", "conv_1")
        assert result.reason == "rollout"
        assert client.refresh() is False  # the gzip representation's ETag polls as unchanged
    assert encodings == ["gzip", None]


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        (None, False),
        ("", False),
        ("gzip", True),
        ("GZIP", True),
        ("br, gzip;q=0.5", True),
        ("x-gzip", True),
        ("*", True),
        ("gzip;q=0", False),
        ("gzip; q=0.0", False),
        ("identity", False),
        ("deflate, br", False),
    ],
)
def test_accept_encoding_admits_gzip_unless_refused(header: str | None, accepted: bool) -> None:
    assert accepts_gzip(header) is accepted
