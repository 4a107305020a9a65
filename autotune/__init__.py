"""autotune: declarative, reproducible tuning of LLM serving engines (docs/architecture.md).

Where things live:

- ``autotune.study``     the study around Hydra's sweep: validate, open, team workers, close
- ``autotune.trial``     one trial: spec in, result out (the only place that knows the stages)
- ``autotune.deploy``    the Launcher interface, plug-in discovery, failures, leftovers, GPUs
- ``autotune.launchers`` the deploy targets shipped with autotune (sim, local, docker, ome)
- ``autotune.benchmark`` genai-bench driver and parser, the virtual-clock replay
- ``autotune.tracking``  MLflow runs, the outbox for outages, terminal progress
- ``autotune.report``    results people act on: best trial, export, figures, report CLI
- ``autotune.sim``       the simulated SGLang engine
- ``autotune.conf``      the Hydra config groups (the repository's conf/)
"""
