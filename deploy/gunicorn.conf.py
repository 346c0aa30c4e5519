"""gunicorn settings for the web dyno: gevent workers, so one process holds many idle SSE streams."""

from taskapp.settings import get_settings

_settings = get_settings()

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
