"""The Flask app: ``GET /consoleresolver/token/<token>``, its claim, ``/healthz`` and ``/metrics``.

One-time tokens are spent in one of two ways:

- **the anchor's way** (a client that only knows ``GET``): a plain
  ``GET /consoleresolver/token/<token>`` (or ``?claim=now``) claims a
  one-time token as it answers, so only one look-up ever gets it.  A client
  that never heard of claims cannot reuse a one-time token by mistake; if
  its console then fails, the token is spent all the same.
- **two steps** (proxyd): ``GET /consoleresolver/token/<token>?claim=later``
  answers without claiming (``"once": true, "claimed": false``), as often
  as asked until the token is claimed; once the console accepted the proxy
  (SPICE: QEMU's link result OK on the main channel; VNC and serial: the
  console's handshake done), ``POST /consoleresolver/token/<token>/claim``
  claims it: 200 ``{"claimed": true}`` for exactly one caller, 409 for
  every later one (and the look-ups answer 404 from then on), 404 for a
  token that is unknown, expired or whose guest stopped, 503 while the
  hypervisor's connection is down.  Claiming a token that is not one-time
  is allowed and changes nothing.

Either way the claim is durable: resolverd gives the token's libvirt secret
a fresh value before it answers, so a restarted resolverd never revives it.

``GET /consoleresolver/token/<token>?format=vv[&connect-proxy=1]`` answers
a remote-viewer file (resolverd.vvfile) for a SPICE token instead, for
management apps to hand to tenants; it never claims a one-time token.

``resolverd`` serves it through gunicorn configured in code (resolverd.server).
Operators who run gunicorn themselves use the factory, with one worker,
threads, and no --preload (the libvirt watchers live in the serving process)::

    RESOLVERD_CONFIG=/etc/virt-console-proxy/resolverd.conf \\
        gunicorn --workers 1 --threads 16 --no-control-socket \\
            --logger-class resolverd.server.RedactingLogger \\
            --certfile F --keyfile F --ca-certs F --cert-reqs 2 'resolverd.app:create_app()'

The watchers then start with the first request.  TLS with a mandatory client
certificate is gunicorn's job in that setup; the config file's tls-* keys
serve the console bridge.
"""

import logging
import re
from typing import Optional
from urllib.parse import unquote

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from resolverd import metrics, settings as settings_module, vvfile
from resolverd.index import Outcome
from resolverd.logs import token_ref
from resolverd.service import Resolver
from resolverd.settings import Settings
from resolverd.tls import SwappableContext

EXTENSION = "resolverd"
TOKEN_PATH = "/consoleresolver/token/"
_TOKEN_IN_PATH = re.compile(re.escape(TOKEN_PATH) + r"([^\s?#\"'/]+)")  # "/claim" may follow


class TokenPathRedactor(logging.Filter):
    """Replaces the token in any logged token URL with its token_ref (request lines, Flask's error logs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if TOKEN_PATH in message:
            record.msg = _TOKEN_IN_PATH.sub(lambda m: TOKEN_PATH + token_ref(unquote(m.group(1))), message)
            record.args = None
        return True


def create_app(settings: Optional[Settings] = None, context: Optional[SwappableContext] = None) -> Flask:
    """The app; without ``settings`` they come from $RESOLVERD_CONFIG or the default config file.

    ``context``: the TLS context of the console bridge, when the caller loaded it already.
    """
    resolver = Resolver(settings or settings_module.from_config_file(), context=context)
    app = Flask("resolverd")
    app.logger.addFilter(TokenPathRedactor())
    app.extensions[EXTENSION] = resolver

    @app.before_request
    def start_watchers() -> None:
        resolver.start()

    @app.route(TOKEN_PATH + "<path:token>", methods=["GET"])
    def token(token: str) -> Response:
        if request.method != "GET":  # Flask adds HEAD to GET routes; it must not claim a one-time token
            return _error("method not allowed", 405)
        if request.args.get("format") == "vv":
            return viewer_file(token)
        claim = request.args.get("claim", "now")
        if claim not in ("now", "later"):
            return _error("claim must be now or later", 400)
        resolution = resolver.resolve(token, request.remote_addr or "?", claim == "now")
        if resolution.outcome is Outcome.OK:
            response = jsonify(resolution.document)
        else:
            response = _refusal(resolution.outcome)
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.route(TOKEN_PATH + "<path:token>/claim", methods=["POST"])
    def claim(token: str) -> Response:
        outcome = resolver.claim(token, request.remote_addr or "?")
        if outcome is Outcome.OK:
            response = jsonify({"claimed": True})
        elif outcome is Outcome.CONSUMED:
            response = _error("token already claimed", 409)
        else:
            response = _refusal(outcome)
        response.headers["Cache-Control"] = "no-store"
        return response

    def viewer_file(token: str) -> Response:
        """A remote-viewer file opening the token's SPICE console through proxyd (the token is not claimed)."""
        if not resolver.writes_viewer_files:
            response = _error("remote-viewer files need --proxy-public, --proxy-ca and --proxy-cert", 501)
        else:
            outcome, text = resolver.viewer_file(token, request.remote_addr or "?",
                                                 request.args.get("connect-proxy") == "1")
            if outcome is Outcome.OK:
                response = Response(text, content_type=f"{vvfile.MEDIA_TYPE}; charset=utf-8")
                response.headers["Content-Disposition"] = 'attachment; filename="console.vv"'
            elif outcome is Outcome.UNAVAILABLE:
                response = _refusal(outcome)
            else:
                response = _error("No SPICE console for this token", 404)
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return _error(exc.description or exc.name, exc.code or 500)

    @app.route("/healthz")
    def healthz() -> Response:
        healthy, body = resolver.health()
        response = jsonify(body)
        response.status_code = 200 if healthy else 503
        return response

    @app.route("/metrics")
    def prometheus() -> Response:
        return Response(metrics.render(resolver.metric_families()), content_type=metrics.CONTENT_TYPE)

    return app


def _refusal(outcome: Outcome) -> Response:
    """The answer to a token that did not resolve: 503 while libvirt is away, else an unknown token's 404."""
    if outcome is Outcome.UNAVAILABLE:
        response = _error("hypervisor connection down, retry later", 503)
        response.headers["Retry-After"] = "2"
        return response
    return _error("No token found", 404)


def _error(message: str, status: int) -> Response:
    response = jsonify({"error": message})
    response.status_code = status
    return response
