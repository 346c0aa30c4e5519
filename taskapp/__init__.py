"""taskapp: multi-step LLM agent runs on Celery, PostgreSQL, Redis and Gemini."""

__version__ = "0.1.0"
