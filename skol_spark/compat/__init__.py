"""Version shims (Spark 3.5, pandas 1.5, pyarrow 14) and telling Spark Connect from classic Spark.

Below every module that touches Spark: nothing here imports the rest of skol_spark.
"""
