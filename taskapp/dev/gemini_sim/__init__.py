"""A local HTTP server that speaks the Gemini REST API, for offline use, tests and benchmarks."""
