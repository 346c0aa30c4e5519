"""gunicorn settings for the web dyno (the Procfile's `web` line); they live in web.gunicorn_config,
so an installed package (`taskapp dev`, a container) serves with the same ones."""

from web.gunicorn_config import *  # noqa: F403
