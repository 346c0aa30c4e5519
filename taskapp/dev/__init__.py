"""Development and test tooling: the dev stack, embedded servers, the Gemini simulator.

Never imported by production code.
"""
