"""Driver-side training: rows off Spark, the training copy, the Keras training loop, sparse
training, MLflow tracking, and the data-parallel fit on the executors (``fit.distributed``)."""
