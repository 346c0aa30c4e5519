"""gunicorn settings for the web dyno: gevent workers, so one process holds many idle SSE streams."""

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
