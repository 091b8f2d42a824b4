"""The WSGI layers around the app (identity/plumbing/wsgi.py): all of them, in the written order."""

import pytest
from werkzeug.middleware.proxy_fix import ProxyFix

from identity.plumbing import wsgi
from identity.plumbing.body_limit import ChunkedBodyLimit
from identity.plumbing.headers import ResponseHeaders
from identity.plumbing.issuer_path import IssuerPath
from identity.plumbing.whole_body import WholeBody
from identity.services.logout_delivery import DeliverAfterResponses
from identity.services.purge import PurgeAfterResponses
from identity.web.cors import Cors
from identity.web.fast_documents import FastDocuments
from identity.web.inputs import AsciiQueryString, KnownHost
from identity.web.metrics import Metrics

OUTERMOST_FIRST = [ProxyFix, IssuerPath, PurgeAfterResponses, DeliverAfterResponses, WholeBody, ResponseHeaders, Metrics, ChunkedBodyLimit, KnownHost,
                   AsciiQueryString,
                   FastDocuments, Cors]


def layers(app) -> list[type]:
    found, layer = [], app.wsgi_app
    while not (callable(layer) and getattr(layer, "__self__", None) is app):  # down to Flask's own wsgi_app
        found.append(type(layer))
        layer = layer.app if isinstance(layer, ProxyFix) else layer.wsgi_app
    return found


def test_the_list_names_each_layer_once_with_a_reason():
    assert len({layer for layer, _ in wsgi.LAYERS}) == len(wsgi.LAYERS) == len(OUTERMOST_FIRST)
    assert all(why.strip() for _, why in wsgi.LAYERS)


@pytest.mark.parametrize("app_config", [{"TRUST_PROXY_HOPS": 1, "PURGE_INTERVAL_SECONDS": 300,
                                         "BACKCHANNEL_LOGOUT_POLL_SECONDS": 15,
                                         "ISSUER": "https://id.example.com/identity"}])
def test_every_layer_wraps_the_app_in_the_written_order(app):
    assert layers(app) == OUTERMOST_FIRST


@pytest.mark.parametrize("app_config", [{"TRUST_PROXY_HOPS": 0, "PURGE_INTERVAL_SECONDS": 0, "MAX_CONTENT_LENGTH": None,
                                         "BACKCHANNEL_LOGOUT_POLL_SECONDS": 0}])
def test_a_layer_its_setting_turns_off_is_left_out(app):
    assert layers(app) == [WholeBody, ResponseHeaders, Metrics, KnownHost, AsciiQueryString, FastDocuments, Cors]


def test_the_server_gets_each_body_as_one_bytes_object(app):
    """A list of one item is what granian writes without a round trip per chunk (whole_body.py)."""
    from werkzeug.test import EnvironBuilder

    for path in ("/healthz", "/.well-known/openid-configuration", "/account/login", "/nowhere"):
        statuses = []
        body = app.wsgi_app(EnvironBuilder(path=path).get_environ(), lambda status, headers, exc=None: statuses.append(status))
        assert type(body) is list and len(body) == 1 and isinstance(body[0], bytes), (path, type(body))
        assert statuses and len(body[0]) > 0, path
    head = app.wsgi_app(EnvironBuilder(path="/healthz", method="HEAD").get_environ(), lambda *a: None)
    assert head == [b""]
