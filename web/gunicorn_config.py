"""gunicorn settings for the web process: gevent workers, so one process holds many idle SSE streams.

Read by `deploy/gunicorn.conf.py` (the Procfile) and by `gunicorn -c python:web.gunicorn_config`
(`taskapp dev`, from an installed package).
"""

import sys

from taskapp.settings import SettingsError, get_settings

try:
    _settings = get_settings()
    _settings.require_secret_key()  # refuse to serve sessions signed with a guessable key
except SettingsError as exc:
    sys.exit(f"configuration error: {exc}")

bind = f"0.0.0.0:{_settings.port}"
workers = _settings.web_concurrency
worker_class = "gevent"
worker_connections = 2000
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = "-"
errorlog = "-"
forwarded_allow_ips = "*"

# Request limits, stated rather than inherited. gunicorn refuses a request past them before
# the app sees it, with a plain status and `Connection: close` (its body is a short HTML page):
# 414 for a longer request line, 431 for a larger header line or more header lines, 400 for a
# malformed header (control characters included). A header line may be as long as it may be
# through the Heroku router (8 KB; 8,190 bytes is gunicorn's most), and so may the request line.
# Request bodies are limited by the app (MAX_CONTENT_LENGTH, a 413 in the API's error shape).
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
