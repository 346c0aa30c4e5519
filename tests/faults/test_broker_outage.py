"""The broker down at submission: a 503 the client can retry, and the retry runs the stored run."""

from __future__ import annotations

from tests.helpers import auth, wait_for_run

RUN = {"workflow": "summarize", "input": {"text": "Some text to summarise."}}


def test_broker_down_gives_503_with_retry_after_and_readyz_names_it(stack, team, client, workers, settings):
    """Broker unreachable: 503 + Retry-After (never 500), /readyz names it; a retry later runs the same run."""
    import httpx

    _, key = team
    url, web = stack.start_web(CELERY_BROKER_URL="redis://127.0.0.1:1/0")
    try:
        resp = httpx.post(
            f"{url}/api/runs", headers={**auth(key), "Idempotency-Key": "broker-down-1"}, json=RUN, timeout=30
        )
        assert resp.status_code == 503 and resp.headers["Retry-After"]
        assert resp.json()["error"]["code"] == "unavailable"
        ready = httpx.get(f"{url}/readyz", timeout=30)
        assert ready.status_code == 503
        checks = ready.json()["checks"]
        assert checks["postgres"] == "ok" and checks["redis"] == "ok" and checks["broker"].startswith("error")
    finally:
        stack.stop(web)
    # The broker is back (this app's broker works): the same key returns the stored run and starts it.
    again = client.post("/api/runs", headers={**auth(key), "Idempotency-Key": "broker-down-1"}, json=RUN)
    assert again.status_code == 202 and again.json["created"] is False
    assert wait_for_run(settings, again.json["id"]).status == "succeeded"
