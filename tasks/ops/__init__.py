"""What the ops dashboard shows, computed from the store alone (issue 14; no Airflow import).

* :mod:`tasks.ops.index` -- one scan of the store, cached and invalidated by manifest time;
* :mod:`tasks.ops.views` -- the data of each page: overview aggregates, a video, a release.

The Airflow side (run and task states, pools, log links) and the HTML live in the plugin
(``plugins/leader360v_airflow/dashboard``).
"""
