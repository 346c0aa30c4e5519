"""`make bench`: every benchmark, one after another."""

from bench import foundation

if __name__ == "__main__":
    foundation.main()
