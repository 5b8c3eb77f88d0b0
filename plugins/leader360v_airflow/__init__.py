"""Airflow-side code of the pipeline: how a stage becomes an Airflow task.

Imports of the labeling engine (``tasks``) happen inside task callables, never at module level,
so DAG parsing stays light (no numpy/OpenCV/torch/GX in the dag-processor).
"""
