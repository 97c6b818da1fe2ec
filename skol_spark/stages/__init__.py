"""The pyspark.ml stages: Param mixins, :class:`BiLSTMClassifier`, :class:`BiLSTMClassificationModel`,
their readers and writers, and the evaluation table."""
