"""The pipeline stages. Each module holds one stage's ``run(inputs, config, store, writer)``;
:mod:`tasks.stages.runner` applies the stage contract around them."""
