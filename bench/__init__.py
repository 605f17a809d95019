"""On-demand benchmarks: ``./run bench [sync|report]`` (not part of the tests).

Each benchmark measures one promise the product makes and prints it as a
table row with the figure it is held to and PASS or MISS:

* :mod:`bench.sync_bench`: a 90-day backfill of one connection and a daily
  sync of 500 connections against the xAI stand-in with 100 ms latency, each
  within 1.5x of its floor (the round trips it cannot avoid, divided by the
  concurrency).
* :mod:`bench.report_bench`: ``month --by model`` on a store of 1,000
  connections x 90 days x 6 models, within 1.5x of the same aggregate written
  as one hand-written SQL query and under 50 ms at the 95th percentile.

Both run on SQLite (in a temporary directory) and on a throwaway PostgreSQL
database (see :mod:`bench.stores`). Every run also checks what it stored, so
a benchmark cannot pass by doing nothing.
"""
