"""`make bench`: every benchmark, one after another (each prints its table for docs/benchmarks.md)."""

import sys

from bench import batching, foundation, pool, quota, sse

if __name__ == "__main__":
    for bench in (foundation, sse, batching, quota, pool):
        sys.argv = [bench.__name__]  # each with its defaults
        print(f"\n===== {bench.__name__} =====", flush=True)
        bench.main()
