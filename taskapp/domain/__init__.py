"""Pure rules: workflow decisions, batching policy, quotas, pricing, prompts (stdlib and pydantic only)."""
