"""Benchmarks for gh-runners: `python -m bench` (or `make bench`) writes bench/results.md.

Every measurement runs the real code in fresh subprocesses so imports, caches
and peak memory are those of a real run:

* evaluation   the program under the recording engine for 1..1,000 pools, next to a floor program
* validation   `python -m schema validate` vs check-jsonschema on the same file
* imports      which SDK modules an AWS-only / GCP-only / mixed file loads, and what they cost
* agent        VM agent start -> runner exec against the loopback doubles
* update       minimum healthy capacity during an update, from the recorded plan

`python -m bench --smoke` runs all of it once at tiny sizes (what the test suite does).
"""
