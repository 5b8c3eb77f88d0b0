"""The pipeline stages. Each module holds one stage's ``run(inputs, config, store, writer)``;
:mod:`tasks.stages.runner` applies the stage contract around them."""

# The per-video chain, in order: the one list of stage names. The runner's stage table, the CLI's
# stage commands, the Airflow tasks of both execution modes, the stage timeouts and the pod table
# (resources.yaml) all follow it and are checked against it. Kept here, free of imports, so the
# dag-processor can read it without loading the engine.
STAGE_NAMES = ("ingest", "decode", "propose", "verify", "sdr", "propagate", "refine", "qa", "validate")
