"""Ablation suites: YAML suite files -> validated runs (content-hashed ids) -> executors (a local pool of
worker subprocesses, or submitit / Slurm) -> ``results/<suite>/<run-id>/`` -> one tidy table.

- :mod:`~mnc_bench.suites.contract`: the names writers and readers share (files, states, columns);
- :mod:`~mnc_bench.suites.spec`: suite files, validation, run ids;
- :mod:`~mnc_bench.suites.commands`: what the CLI's run / status / collect call;
- :mod:`~mnc_bench.suites.runner`: plan against the results directory, prepare, execute, record
  (:mod:`~mnc_bench.suites.record`: the invocation records of suite.json);
- :mod:`~mnc_bench.suites.executors`: local pool, submitit; :mod:`~mnc_bench.suites.progress`: the live table;
- :mod:`~mnc_bench.suites.worker`: one run in its own process (:mod:`~mnc_bench.suites.hooks`: its training
  hook; :mod:`~mnc_bench.suites.proposals`: proposal recall; :mod:`~mnc_bench.suites.tracking`: MLflow);
- :mod:`~mnc_bench.suites.rundir`: a run directory's files, status and lock;
- :mod:`~mnc_bench.suites.reuse`: finished runs of other suites copied instead of trained again;
- :mod:`~mnc_bench.suites.smoke`: ``run --smoke``, a rehearsal of every run;
- :mod:`~mnc_bench.suites.status`, :mod:`~mnc_bench.suites.collect`: reading the results back;
- :mod:`~mnc_bench.suites.rescore`, :mod:`~mnc_bench.suites.robustness`: more metrics for finished runs.
"""
