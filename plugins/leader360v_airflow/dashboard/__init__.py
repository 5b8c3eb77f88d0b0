"""The ops dashboard (issue 14): a FastAPI app mounted by the ``leader360v`` plugin at
``/leader360v`` and shown in the Airflow UI through ``external_views`` (see :mod:`.app`)."""
