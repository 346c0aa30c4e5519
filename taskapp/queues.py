"""Queue names: orchestration apart from LLM calls, and one LLM queue per model.

Separate queues let operators scale call capacity per model (and see each model's
backlog in Flower) without orchestration waiting behind slow calls.
"""

ORCHESTRATION_QUEUE = "orchestration"


def llm_queue(model: str) -> str:
    return f"llm.{model}"
