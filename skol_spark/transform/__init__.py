"""Executor-side labeling: the Arrow UDF and the plan around it (``udf``), and labeling one
partition with the network cached per Python worker (``predict``)."""
